/*
 * Chunk one sample's sequences (its files read in order as one input), translate every chunk in
 * six frames and write the stop-free frames as numbered shard pairs (nucleotide, protein) plus the
 * chunk table. Inputs are staged as reads/1/<name>, reads/2/<name>, ...: any file name works,
 * spaces and leading dashes included.
 */
process PREPARE {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(reads, stageAs: 'reads/?/*', arity: '1..*')

    output:
    tuple val(meta), path('prepared'), emit: prepared
    // What REPORT reads (prepare.json, chunk_frames.tsv, input_sequences.tsv): not the shards,
    // which would be staged for nothing on executors without a shared file system
    tuple val(meta), path('prepared/*.{json,tsv}', arity: '3'), emit: tables
    tuple val(meta), path('prepared/shards/*', arity: '0..*'), emit: shards
    path 'versions.yml', emit: versions

    script:
    // A staged file renders shell-escaped (Sample\ 1.fa): no quotes around it
    """
    virnucpro prepare ${reads} --outdir prepared ${task.ext.args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p prepared/shards
    touch prepared/chunk_frames.tsv prepared/input_sequences.tsv prepared/prepare.json
    for shard in shard_0000{1..8}; do
        touch "prepared/shards/\$shard.nucleotide.fa" "prepared/shards/\$shard.protein.faa"
    done

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
