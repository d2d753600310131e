/*
 * DNABERT-S embeddings of a group of nucleotide shards: one worker per GPU the task was given
 * (CUDA_VISIBLE_DEVICES), else `--cpu_workers` processes on the CPU.
 */
process EMBED_DNA {
    tag "${meta.id}:${meta.group}"
    label 'gpu'
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode, enabled: params.publish_embeddings, pattern: 'embeddings/*'

    input:
    tuple val(meta), path(shards, arity: '1..*')
    tuple val(model), path(model_files)

    output:
    tuple val(meta), path('embeddings/*.dnabert.parquet'), emit: embeddings
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    def revision = params.dnabert_revision ? "--revision '${params.dnabert_revision}'" : ''
    def batch_size = task.ext.batch_size ?: params.dnabert_batch_size
    """
    virnucpro embed-dna ${shards} \\
        --outdir embeddings \\
        --model '${model}' ${revision} \\
        --devices auto \\
        --workers ${params.cpu_workers} \\
        --precision ${params.precision} \\
        --batch-size ${batch_size} \\
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
        touch "embeddings/\$(basename "\$shard" .nucleotide.fa).dnabert.parquet"
    done

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
