/*
 * Classifier scores of one shard from its two embeddings (paired by shard name).
 */
process PREDICT {
    tag "${meta.id}:${shard}"
    label 'process_low'

    input:
    tuple val(meta), val(shard), path(dnabert), path(esm)
    tuple val(classifier), path(classifier_files)

    output:
    tuple val(meta), path("scores/${shard}.scores.parquet"), emit: scores
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    def revision = params.classifier_revision ? "--classifier-revision '${params.classifier_revision}'" : ''
    """
    virnucpro predict ${dnabert} ${esm} \\
        --classifier '${classifier}' ${revision} \\
        --outdir scores \\
        --quiet \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p scores
    touch scores/${shard}.scores.parquet

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
