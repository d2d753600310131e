/*
 * The per-sample outcomes (sampleOutcomes, which VIRNUCPRO emits as `outcomes`) and the closing
 * lines (completionSummary) for the progress events of --events (a JSON list of [sample id, stage,
 * count]) with --outdir, written to --results as JSON: {"outcomes": [[meta, status, stage, folder]],
 * "summary": "..."}. No task runs.
 */

include { sampleOutcomes; completionSummary } from '../../subworkflows/local/utils_virnucpro_pipeline'

workflow {
    def events = new groovy.json.JsonSlurper().parse(file(params.events).toFile())
    def outcomes = sampleOutcomes(events, params.outdir)
    def written = outcomes.collect { meta, status, stage, folder -> [meta, status, stage, folder?.toString()] }
    def results = [outcomes: written, summary: completionSummary(outcomes, params.outdir)]
    file(params.results).text = groovy.json.JsonOutput.toJson(results)
}
