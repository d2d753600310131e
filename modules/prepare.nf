/*
 * Chunk one sample's sequences, translate every chunk in six frames and write the stop-free frames
 * as numbered shard pairs (nucleotide, protein) plus chunks.tsv.
 */
process PREPARE {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(reads)

    output:
    tuple val(meta), path('prepared'), emit: prepared
    tuple val(meta), path('prepared/shards/*.nucleotide.fa'), emit: nucleotide, optional: true
    tuple val(meta), path('prepared/shards/*.protein.faa'), emit: protein, optional: true
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    virnucpro prepare '${reads}' --outdir prepared ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p prepared/shards
    touch prepared/chunk_frames.tsv prepared/input_sequences.tsv prepared/prepare.json
    touch prepared/shards/shard_00001.nucleotide.fa prepared/shards/shard_00001.protein.faa

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
