/*
 * The run as one: summary.tsv, summary.json and summary.html (a row, a bar and a link to report.html
 * per sample, failed samples included) and the MultiQC custom content of all samples (*_mqc.json),
 * from each finished sample's REPORT results. Runs once, after every sample has ended.
 *
 * `samples`: [id, status ('finished' or 'failed'), failed stage ('' or PREPARE, EMBED, REPORT)]
 * for every sample, in --input's order; `folders`: REPORT's results folder of each finished sample,
 * in the order of the finished samples in `samples`. The script only writes them down as the
 * manifest of `virnucpro summarize` (each report is linked where REPORT publishes it:
 * <outdir>/<sample>/report.html, beside <outdir>/summary.html).
 */
process SUMMARY {
    tag "${samples.size()} samples"
    label 'process_single'

    input:
    tuple val(samples), path(folders, stageAs: 'samples/?/*')

    output:
    path 'summary/summary.{tsv,json,html}', arity: '3', emit: summary
    path 'summary/*_mqc.json', arity: '3', emit: multiqc_files
    path 'manifest.tsv', emit: manifest
    path 'versions.yml', emit: versions

    script:
    def staged = folders instanceof List ? folders : [folders]
    def finished = samples.findAll { sample -> sample[1] == 'finished' }.collect { sample -> sample[0] }
    def folderOf = [finished, staged.collect { folder -> folder.toString() }].transpose().collectEntries()
    def rows = samples.collect { id, status, stage ->
        [id, status, stage ?: '', folderOf[id] ?: '', status == 'finished' ? "${id}/report.html" : ''].join('\t')
    }
    // One shell word per line ('...' with each ' written '\''): sample names are the pipeline's
    def lines = (['sample\tstatus\tfailed_stage\tfolder\treport'] + rows).collect { line -> "'" + line.replace("'", "'\\''") + "'" }
    """
    printf '%s\\n' ${lines.join(' ')} > manifest.tsv
    virnucpro summarize --manifest manifest.tsv --outdir summary ${task.ext.args ?: ''}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p summary
    touch manifest.tsv summary/summary.tsv summary/summary.json summary/summary.html
    touch summary/virnucpro_general_stats_mqc.json summary/virnucpro_sequences_mqc.json summary/virnucpro_samples_mqc.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
