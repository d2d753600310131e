/*
 * Classifier scores of a group of shards, from each shard's two embeddings (paired by shard name).
 */
process PREDICT {
    tag "${meta.id}:${meta.group}"
    label 'process_low'

    input:
    tuple val(meta), path(embeddings, stageAs: 'embeddings/*')
    tuple val(classifier), path(classifier_files)

    output:
    tuple val(meta), path('scores/*.scores.parquet'), emit: scores
    path 'versions.yml', emit: versions

    script:
    """
    virnucpro predict embeddings/* --classifier '${classifier}' --outdir scores ${task.ext.args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p scores
    for embedding in embeddings/*.dnabert.parquet; do
        touch "scores/\$(basename "\$embedding" .dnabert.parquet).scores.parquet"
    done

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
