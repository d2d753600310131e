/*
 * The identity of a local model folder (`local:sha256=...` over its files, what the embedding
 * files record as the model's revision), computed once per run and cached with the run instead
 * of by every embedding task.
 */
process MODEL_IDENTITY {
    tag "${kind}"
    label 'process_low'

    input:
    tuple val(kind), path(model)

    output:
    tuple val(kind), path('identity.txt'), emit: identity
    path 'versions.yml', emit: versions

    script:
    """
    virnucpro model-identity '${model}' > identity.txt

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    echo 'local:sha256=0000000000000000000000000000000000000000000000000000000000000000' > identity.txt

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
