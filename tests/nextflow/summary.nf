/*
 * SUMMARY and MULTIQC wired as the pipeline is to wire them (see the report of issue 19): from each
 * sample's outcome ([meta, status, failed stage, published folder], in --input's order) and REPORT's
 * results ([meta, files under results/]). Here both come from --outcomes, a TSV of
 * id, status, failed stage and (finished samples) a folder that stands for REPORT's results/.
 * Published with tests/nextflow/summary.config (the lines conf/modules.config is to get).
 */

include { SUMMARY } from '../../modules/summary'
include { MULTIQC } from '../../modules/multiqc'
include { summaryInputs } from '../../subworkflows/local/utils_virnucpro_pipeline'

params.outcomes = null
params.skip_multiqc = false
params.multiqc_config = "${projectDir}/../../assets/multiqc_config.yaml"

workflow {
    def listed = file(params.outcomes).readLines().collect { line -> line.split('\t', -1) as List }
    def outcomes = channel.fromList(listed).map { id, status, stage, _folder -> [[id: id], status, stage ?: null, null] }
    def results = channel.fromList(listed.findAll { row -> row[1] == 'finished' })
        .map { id, _status, _stage, folder -> [[id: id], file(folder).listFiles().toList()] }

    // The pipeline's lines from here on
    def report_folders = results.map { meta, files -> [meta.id, files[0].parent] }
    def summary_input = outcomes.toList().map { list -> [list] }
        .combine(report_folders.toList().map { list -> [list] })
        .map { list, folders -> summaryInputs(list, folders) }
    SUMMARY(summary_input)
    if (!params.skip_multiqc) {
        def multiqc_config = params.multiqc_config ? channel.value(file(params.multiqc_config)) : channel.value([])
        MULTIQC(SUMMARY.out.multiqc_files, SUMMARY.out.versions.collect(), multiqc_config)
    }
}
