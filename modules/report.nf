/*
 * One sample's final outputs from all its shard scores and prepare's tables (not its shards): the tables in the original tool's layout,
 * chunks.tsv, sequences.tsv, viral_regions.tsv/.bed/.fa, viral.fa, report.html with its figures,
 * and run.json (with the pipeline's parameters merged in). Written to results/, published to
 * <outdir>/<sample>/.
 */
process REPORT {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(reads, stageAs: 'reads/?/*', arity: '1..*'), path(tables, stageAs: 'prepared/*', arity: '3'), path(scores, stageAs: 'scores/*', arity: '0..*')
    val(run_info_base64)
    path(calibration, stageAs: 'calibration/*')

    output:
    tuple val(meta), path('results/*'), emit: results
    path 'versions.yml', emit: versions

    script:
    // A staged file renders shell-escaped (Sample\ 1.fa): no quotes around it
    def inputs = reads.collect { f -> "--input ${f}" }.join(' ')
    // --calibration: the file is staged (containers see it); [] when none
    def calibration_option = calibration ? "--calibration ${calibration}" : ''
    """
    printf '%s' '${run_info_base64}' | base64 -d > run_info.json
    mkdir -p scores
    virnucpro report ${inputs} --prepared prepared --scores scores --outdir results --run-info run_info.json ${calibration_option} ${task.ext.args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p results
    touch results/prediction_results.txt results/prediction_results_highestscore.csv results/chunks.tsv
    touch results/sequences.tsv results/viral.fa results/report.html results/run.json
    touch results/viral_regions.tsv results/viral_regions.bed results/viral_regions.fa

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
