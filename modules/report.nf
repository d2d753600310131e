/*
 * One sample's final outputs from all its shard scores: the tables in the original tool's layout,
 * chunks.tsv, sequences.tsv, viral_regions.tsv/.bed/.fa, viral.fa, report.html with its figures,
 * and run.json (with the pipeline's parameters merged in).
 */
process REPORT {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(reads), path(prepared), path(scores, arity: '0..*')
    val(run_info_base64)

    output:
    tuple val(meta), path("${meta.id}"), emit: results
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    def score_options = scores.collect { f -> "--scores '${f}'" }.join(' ')
    """
    printf '%s' '${run_info_base64}' | base64 -d > run_info.json
    virnucpro report \\
        --input '${reads}' \\
        --prepared '${prepared}' \\
        ${score_options} \\
        --outdir '${meta.id}' \\
        --run-info run_info.json \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p '${meta.id}'
    cd '${meta.id}'
    touch prediction_results.txt prediction_results_highestscore.csv chunks.tsv sequences.tsv viral.fa report.html run.json
    touch viral_regions.tsv viral_regions.bed viral_regions.fa
    cd ..

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
