#!/usr/bin/env nextflow
/*
 * VirNucPro, the pipeline: find viral sequences with VirNucPro's method.
 *
 *   nextflow run . --input 'reads/*.fa.gz' --outdir results -profile gpu,docker
 *
 * Per sample (one input file, or the files of one samplesheet sample): PREPARE chunks and
 * translates into shards, EMBED embeds and scores them in groups, REPORT writes the sample's
 * outputs to <outdir>/<sample>/, the same files as `virnucpro run`. A failed task stops only its
 * own sample. Once every sample has ended, SUMMARY writes <outdir>/summary.tsv (.json, .html), a
 * row per sample, and MULTIQC <outdir>/multiqc/; the run ends with a line per sample.
 *
 *   workflows/virnucpro.nf                          the workflow: models, PREPARE, EMBED, REPORT, SUMMARY
 *   modules/                                        one process each, one `virnucpro` call each
 *   subworkflows/local/utils_virnucpro_pipeline/    checks before the first task, the closing lines
 *   subworkflows/local/utils_params_schema/         parameter checks read from nextflow_schema.json
 *   subworkflows/local/utils_input_samples/         --input: files, globs and samplesheets
 *   subworkflows/local/utils_models/                the models as task inputs, and their checks
 */

include { VIRNUCPRO } from './workflows/virnucpro'
include { PIPELINE_INITIALISATION; PIPELINE_COMPLETION; helpMessage } from './subworkflows/local/utils_virnucpro_pipeline'

workflow {
    main:
    if (params.help) {
        log.info(helpMessage())
    }
    else {
        PIPELINE_INITIALISATION(params, args)
        VIRNUCPRO(PIPELINE_INITIALISATION.out.samples, params)
        PIPELINE_COMPLETION(VIRNUCPRO.out.progress, params.outdir)
    }
}
