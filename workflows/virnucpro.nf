/*
 * VirNucPro per sample: PREPARE chunks and translates into shards; shards go in groups of
 * --shards_per_task to EMBED (both models and the classifier, one worker per GPU of the task: each
 * shard is scored where its embeddings are made, and the embeddings are kept only with
 * --keep_embeddings); REPORT writes the sample's outputs to <outdir>/<sample>/, the same files as
 * `virnucpro run`, as soon as that sample's groups are scored. A failed task stops only its own
 * sample. Once every sample has ended, SUMMARY writes summary.tsv/.json/.html across the samples
 * and MULTIQC (unless --skip_multiqc) multiqc/multiqc_report.html. Every step is one call of the `virnucpro` command; this file only wires channels.
 */

include { MAKE_TEST_MODELS } from '../modules/make_test_models'
include { MODEL_IDENTITY } from '../modules/model_identity'
include { PREPARE } from '../modules/prepare'
include { EMBED } from '../modules/embed'
include { REPORT } from '../modules/report'
include { SUMMARY } from '../modules/summary'
include { MULTIQC } from '../modules/multiqc'
include { modelInput; publishedClassifier } from '../subworkflows/local/utils_models'
include { sampleOutcomes; summaryInputs } from '../subworkflows/local/utils_virnucpro_pipeline'

workflow VIRNUCPRO {
    take:
    samples // [[id: sample], [files]] per sample
    settings // the run's parameters

    main:
    def dnabert_model = channel.empty()
    def esm_model = channel.empty()
    def classifier = channel.empty()
    def versions = channel.empty()
    def local_models = channel.empty()
    if (settings.make_test_models) {
        MAKE_TEST_MODELS()
        local_models = MAKE_TEST_MODELS.out.dnabert.map { dir -> ['dnabert', dir] }
            .mix(MAKE_TEST_MODELS.out.esm.map { dir -> ['esm', dir] })
        classifier = MAKE_TEST_MODELS.out.classifier.map { dir -> [dir.name, dir] }
        versions = versions.mix(MAKE_TEST_MODELS.out.versions)
    }
    else {
        def dnabert = modelInput('dnabert_model', settings.dnabert_model)
        def esm = modelInput('esm_model', settings.esm_model)
        classifier = channel.value(modelInput('classifier', settings.classifier ?: publishedClassifier(settings.chunk_size)))
        local_models = channel.fromList([['dnabert', dnabert[1]], ['esm', esm[1]]].findAll { _kind, files -> files })
        dnabert_model = dnabert[1] ? channel.empty() : channel.value([dnabert[0], settings.dnabert_revision ?: '', []])
        esm_model = esm[1] ? channel.empty() : channel.value([esm[0], settings.esm_revision ?: '', []])
    }
    // A local model folder's identity (a hash of its files) is computed once, by one task, and
    // given to every embedding task instead of each hashing the whole folder again
    MODEL_IDENTITY(local_models)
    versions = versions.mix(MODEL_IDENTITY.out.versions)
    def identified = local_models
        .join(MODEL_IDENTITY.out.identity)
        .map { kind, dir, identity -> [kind, [dir.name, identity.text.trim(), dir]] }
    dnabert_model = dnabert_model.mix(identified.filter { kind, _model -> kind == 'dnabert' }.map { _kind, model -> model }).first()
    esm_model = esm_model.mix(identified.filter { kind, _model -> kind == 'esm' }.map { _kind, model -> model }).first()

    PREPARE(samples)

    def shard_groups = PREPARE.out.shards.flatMap { meta, shards -> shardGroups(meta, shards, settings.shards_per_task) }
    EMBED(shard_groups, dnabert_model, esm_model, classifier)
    def group_scores = EMBED.out.scores

    // A sample's scores go to REPORT as soon as all its groups are scored (groupKey knows how
    // many), sorted so that a resumed run sees the same inputs and reuses the finished report
    def scored = group_scores
        .map { meta, files -> [groupKey(meta.id, meta.groups), files] }
        .groupTuple()
        .map { id, files -> [id.toString(), files.flatten().sort(false) { f -> f.name }] }
    def unscored = PREPARE.out.shards
        .filter { _meta, shards -> shards.size() == 0 }
        .map { meta, _shards -> [meta.id, []] }
    report_inputs = samples.map { meta, files -> [meta.id, meta, files] }
        .join(PREPARE.out.tables.map { meta, tables -> [meta.id, tables] })
        .join(scored.mix(unscored))
        // REPORT's memory follows the sample's size, read off prepare's counts
        .map { _id, meta, files, tables, scores -> [meta + sampleCounts(tables), files, tables, scores] }
    def calibration = settings.calibration ? channel.value(file(settings.calibration)) : channel.value([])
    REPORT(report_inputs, runInfo(settings), calibration)

    versions = versions.mix(PREPARE.out.versions, EMBED.out.versions, REPORT.out.versions)

    // What each sample got to, as it gets there: [id, stage, count]
    reached = samples.map { meta, _files -> [meta.id, 'listed', 1] }
        .mix(
            PREPARE.out.shards.map { meta, shards -> [meta.id, 'prepared', shardGroups(meta, shards, settings.shards_per_task).size()] },
            group_scores.map { meta, _files -> [meta.id, 'embedded', 1] },
            REPORT.out.results.map { meta, _files -> [meta.id, 'reported', 1] },
        )
    // Once every sample has ended, one per sample in --input's order: [meta, status, failed stage,
    // result folder] (sampleOutcomes in subworkflows/local/utils_virnucpro_pipeline). Steps that
    // summarise the run across samples start from it.
    def outdir = settings.outdir
    sample_outcomes = reached.toList().flatMap { events -> sampleOutcomes(events, outdir) }

    // The run as one, once every sample has ended: summary.tsv, .json and .html at the top of
    // --outdir (failed samples included) and MultiQC's report, from REPORT's results (not the
    // published folders, which may still be copying). A resumed run with the same samples reuses them.
    def report_folders = REPORT.out.results.map { meta, files -> [meta.id, (files instanceof List ? files[0] : files).parent] }
    summary_input = sample_outcomes.toList().map { list -> [list] }
        .combine(report_folders.toList().map { list -> [list] })
        .map { outcomes, folders -> summaryInputs(outcomes, folders) }
    SUMMARY(summary_input)
    versions = versions.mix(SUMMARY.out.versions)
    if (!settings.skip_multiqc) {
        def multiqc_config = channel.value(file("${projectDir}/assets/multiqc_config.yaml"))
        MULTIQC(SUMMARY.out.multiqc_files, versions.collect(), multiqc_config)
        versions = versions.mix(MULTIQC.out.versions)
    }

    // Every process's versions.yml, named by its short name (EMBED, not VIRNUCPRO:EMBED)
    versions
        .map { file -> file.text.replaceFirst(/^"[^"]*:([^":]+)":/, '"$1":') }
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${settings.outdir}/pipeline_info", sort: true, newLine: false)

    emit:
    outcomes = sample_outcomes // [meta, status, failed stage, result folder] per sample, after all
    progress = reached // [id, stage, count], as each sample reaches a stage
}

// The sample's shards (both files of each) in name order, `perTask` shards per group:
// [meta + [group: number, groups: how many, shards: in this group], files]
def shardGroups(meta, shards, perTask) {
    def byShard = shards.groupBy { f -> f.name.replaceFirst(/\..*$/, '') }
    def groups = byShard.keySet().sort().collate(perTask as int)
    return groups.withIndex().collect { names, index ->
        [meta + [group: index + 1, groups: groups.size(), shards: names.size()], names.collectMany { name -> byShard[name].sort { f -> f.name } }]
    }
}

// The sample's sequences and chunks, from prepare.json (for REPORT's memory request, conf/base.config)
def sampleCounts(tables) {
    def summary = tables.find { f -> f.name == 'prepare.json' }
    def counts = [:]
    try {
        counts = summary ? new groovy.json.JsonSlurper().parse(summary.toFile()) : [:]
    }
    catch (Exception _error) {
        counts = [:] // a stub run's empty file: REPORT gets the least memory
    }
    return [sequences: (counts.sequences ?: 0) as long, chunks: (counts.chunks ?: 0) as long]
}

// What REPORT merges into run.json, as base64 (safe to put in a task script whatever the
// parameters hold). Only values that decide the results and stay the same on a resumed run, so
// the finished report is reused: settings that change only speed (batch sizes, GPUs, workers) or
// where tasks run are left out; the embeddings' own metadata records the batch settings they
// were made with, and run.json's models entry carries it.
def runInfo(settings) {
    def speedOrPlace = [
        'help', 'outdir', 'publish_dir_mode', 'publish_embeddings', 'keep_embeddings', 'embedding_dtype', 'trace_report_suffix', 'skip_multiqc',
        'dnabert_batch_size', 'esm_tokens_per_batch', 'gpus', 'cpu_workers', 'accelerator_type', 'gpu_lock_dir',
        'max_cpus', 'max_memory', 'max_time', 'max_retries', 'slurm_queue', 'slurm_gpu_queue', 'slurm_options',
    ]
    def recorded = settings.keySet().findAll { name -> !(name in speedOrPlace) && !(name =~ /[A-Z-]/) }
    def info = [
        engine: 'nextflow',
        nextflow_version: nextflow.version.toString(),
        pipeline_version: workflow.manifest.version,
        profile: workflow.profile,
        container_engine: workflow.containerEngine,
        params: recorded.sort().collectEntries { name -> [name, settings[name]] },
    ]
    return groovy.json.JsonOutput.toJson([nextflow: info]).bytes.encodeBase64().toString()
}
