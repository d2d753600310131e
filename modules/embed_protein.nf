/*
 * ESM-2 embeddings of a group of protein shards: one worker per GPU the task was given
 * (CUDA_VISIBLE_DEVICES), else `--cpu_workers` processes on the CPU.
 */
process EMBED_PROTEIN {
    tag "${meta.id}:${meta.group}"
    label 'gpu'
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode, enabled: params.publish_embeddings, pattern: 'embeddings/*'

    input:
    tuple val(meta), path(shards, arity: '1..*')
    tuple val(model), path(model_files)

    output:
    tuple val(meta), path('embeddings/*.esm.parquet'), emit: embeddings
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    def revision = params.esm_revision ? "--revision '${params.esm_revision}'" : ''
    def tokens_per_batch = task.ext.tokens_per_batch ?: params.esm_tokens_per_batch
    """
    virnucpro embed-protein ${shards} \\
        --outdir embeddings \\
        --model '${model}' ${revision} \\
        --devices auto \\
        --workers ${params.cpu_workers} \\
        --precision ${params.precision} \\
        --tokens-per-batch ${tokens_per_batch} \\
        --quiet \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
        torch: \$(python3 -c 'import torch; print(torch.__version__)')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p embeddings
    for shard in ${shards}; do
        touch "embeddings/\$(basename "\$shard" .protein.faa).esm.parquet"
    done

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
