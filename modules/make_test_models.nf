/*
 * The small random models of `virnucpro make-test-models` (real architectures, tiny sizes), for the
 * test profile: nothing is downloaded.
 */
process MAKE_TEST_MODELS {
    tag 'test models'
    label 'process_low'

    output:
    path 'models/dnabert-s', emit: dnabert
    path 'models/esm2', emit: esm
    path 'models/classifier', emit: classifier
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    virnucpro make-test-models models ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p models/dnabert-s models/esm2 models/classifier
    touch models/dnabert-s/config.json models/esm2/config.json models/classifier/config.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
