/*
 * What the pipeline does before its first task and after its last one.
 *
 * PIPELINE_INITIALISATION checks every parameter, the input and the models, and stops the run
 * before any task starts at the first problem, with one line that names the parameter, the value
 * and what to do; then it logs what the run will do and emits the samples.
 * PIPELINE_COMPLETION ends the run's log with one line per sample: where its results are, or the
 * stage it failed in.
 */

include { validateParameters; schemaGroups } from '../utils_params_schema'
include { inputSamples } from '../utils_input_samples'
include { checkCalibration; checkRevision; checkClassifier; checkOfflineModels; publishedClassifier } from '../utils_models'

workflow PIPELINE_INITIALISATION {
    take:
    settings // the run's parameters
    positional // the command line's arguments that are not options (`args` of the main script)

    main:
    def sample_list = checkParameters(settings, positional)
    log.info(summary(settings, sample_list))
    if ((settings.gpus as int) > 0) {
        // Shared by the embedding tasks of this host (virnucpro claim-gpus); made before any
        // container mounts it
        file(settings.gpu_lock_dir).mkdirs()
    }

    emit:
    samples = channel.fromList(sample_list) // [[id: sample], [files]], in --input's order
}

workflow PIPELINE_COMPLETION {
    take:
    progress // [sample id, stage reached, count] as each sample reaches a stage (VIRNUCPRO.out.progress)
    outdir

    main:
    // Collected as they happen, so that a run stopped early still says where each sample got to
    def events = java.util.Collections.synchronizedList([])
    progress.subscribe { event -> events << event }
    workflow.onComplete {
        log.info(completionSummary(sampleOutcomes(events.collect { event -> event }, outdir), outdir))
    }
}

/*
 * The checks of parameters, input and models, in this order: the schema's (unknown parameters,
 * types, choices, bounds, patterns: nextflow_schema.json), then those that the schema cannot say.
 * Returns the samples.
 */
def checkParameters(settings, positional) {
    validateParameters(settings, "${projectDir}/nextflow_schema.json")
    // An unquoted glob is expanded by the shell: --input gets the first file, the rest arrive here.
    // (Nextflow's launcher turns a trailing -stub-run into `-stub-run true`, leaving a 'true' here.)
    def extra = workflow.stubRun && 'true' in positional ? positional.withIndex().findAll { _value, index -> index != positional.indexOf('true') }.collect { value, _index -> value } : positional
    if (extra) {
        error("Unexpected argument(s) ${extra.take(3).join(' ')}${extra.size() > 3 ? ' ...' : ''}: quote a glob so that Nextflow expands it (--input 'reads/*.fa.gz'), or list the samples in a samplesheet (--input samples.csv)")
    }
    if (settings.precision.toString() == 'fp8' && settings.gpus.toString() == '0') {
        error("--precision fp8 needs GPUs of compute capability 9.0 or later (Hopper); the embedding runs on the CPU with --gpus 0: set --gpus or choose fp32, bf16 or fp16")
    }
    if (settings.confidence_medium.toString().toBigDecimal() > settings.confidence_high.toString().toBigDecimal()) {
        error("--confidence_medium (${settings.confidence_medium}) must not be above --confidence_high (${settings.confidence_high})")
    }
    if (settings.calibration) {
        checkCalibration(settings)
    }
    if (!settings.make_test_models) {
        checkRevision('dnabert_model', settings.dnabert_model, settings.dnabert_revision)
        checkRevision('esm_model', settings.esm_model, settings.esm_revision)
        checkClassifier(settings.classifier ?: publishedClassifier(settings.chunk_size), settings.chunk_size)
    }
    def samples = inputSamples(settings)
    if (!settings.make_test_models) {
        checkOfflineModels(settings)
    }
    return samples
}

/*
 * Each sample's outcome from the stages it reached ([id, 'listed' | 'prepared' | 'embedded' |
 * 'reported', count] events, the samples listed in --input's order):
 * [meta, status, failed stage, result folder]: meta is [id:, groups: its shard groups (null before
 * PREPARE finished), groups_scored:]; status 'finished' or 'failed'; the failed stage 'PREPARE',
 * 'EMBED' or 'REPORT' (null when finished); the folder <outdir>/<id> (null when failed).
 */
def sampleOutcomes(events, outdir) {
    def ids = events.findAll { event -> event[1] == 'listed' }.collect { event -> event[0] }
    return ids.collect { id ->
        def mine = events.findAll { event -> event[0] == id }
        def groups = mine.find { event -> event[1] == 'prepared' }?.getAt(2)
        def scored = stageCount(mine, 'embedded')
        def stage = stageCount(mine, 'reported') ? null
            : groups == null ? 'PREPARE'
            : scored < groups ? 'EMBED'
            : 'REPORT'
        def meta = [id: id, groups: groups, groups_scored: scored]
        [meta, stage ? 'failed' : 'finished', stage, stage ? null : file("${outdir}/${id}")]
    }
}

def stageCount(events, stage) {
    return events.findAll { event -> event[1] == stage }.sum { event -> event[2] } ?: 0
}

// One line per sample: where its results are, or the stage it stopped at.
def completionSummary(outcomes, outdir) {
    def lines = ["VirNucPro, the pipeline: ${outcomes.size()} sample(s)"]
    outcomes.each { meta, _status, stage, _folder ->
        def state = !stage ? "finished: ${outdir}/${meta.id}/"
            : stage == 'EMBED' ? "FAILED in EMBED (${meta.groups_scored} of ${meta.groups} shard groups embedded and scored)"
            : "FAILED in ${stage}"
        lines << "  ${meta.id}: ${state}"
    }
    lines << "All samples in one table: ${outdir}/summary.tsv (summary.html, multiqc/ beside it)"
    def failed = outcomes.count { _meta, status, _stage, _folder -> status == 'failed' }
    if (failed) {
        lines << "${failed} sample(s) failed (the other samples are complete); the failed tasks are marked FAILED in ${outdir}/pipeline_info/execution_trace_*.txt, with their error in the work folder's .command.err. Fix the cause and run again with -resume."
    }
    return lines.join('\n')
}

def helpMessage() {
    def lines = [
        "VirNucPro, the pipeline ${workflow.manifest.version}: find viral sequences with VirNucPro's method",
        '',
        "  nextflow run . --input 'reads/*.fa.gz' --outdir results [-profile gpu,docker|podman|singularity|apptainer|conda,slurm]",
        '',
    ]
    schemaGroups("${projectDir}/nextflow_schema.json").values().each { group ->
        lines << "${group.title}:"
        group.properties.each { name, spec ->
            if (!spec.hidden) {
                def fallback = spec.containsKey('default') ? " [default: ${spec.default}]" : ''
                lines << "  --${name.padRight(24)} ${spec.description}${fallback}"
            }
        }
        lines << ''
    }
    lines << 'Profiles: test, docker, podman, singularity, apptainer, conda, gpu, slurm. See docs/usage.md.'
    return lines.join('\n')
}

def summary(settings, samples) {
    return [
        "VirNucPro, the pipeline ${workflow.manifest.version}",
        "  samples    : ${samples.size()} (${samples.collect { s -> s[0].id }.take(5).join(', ')}${samples.size() > 5 ? ', ...' : ''})",
        "  outdir     : ${settings.outdir}",
        "  models     : ${settings.make_test_models ? 'test models (virnucpro make-test-models)' : "${settings.dnabert_model}, ${settings.esm_model}, ${settings.classifier ?: "published ${settings.chunk_size}_model.pth"}"}",
        "  chunk size : ${settings.chunk_size}, precision ${settings.precision}, GPUs per embedding task ${settings.gpus}",
    ].join('\n')
}

// SUMMARY's input: [[id, status, failed stage], ...] in --input's order, and REPORT's results
// folder of each finished sample, in the same order
def summaryInputs(outcomes, reportFolders) {
    def folderOf = reportFolders.collectEntries { id, folder -> [id, folder] }
    def samples = outcomes.collect { meta, status, stage, _published -> [meta.id, status, stage ?: ''] }
    def folders = samples.findAll { sample -> sample[1] == 'finished' }.collect { sample -> folderOf[sample[0]] }
    return [samples, folders]
}
