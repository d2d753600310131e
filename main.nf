#!/usr/bin/env nextflow
/*
 * VirNucPro, the pipeline: find viral sequences with VirNucPro's method.
 *
 *   nextflow run . --input 'reads/*.fa.gz' --outdir results -profile gpu,docker
 *
 * Per sample (one input file): PREPARE chunks and translates into shards; shards go in groups of
 * --shards_per_task to EMBED_DNA and EMBED_PROTEIN (one worker per GPU of the task); PREDICT
 * scores each shard from its two embeddings, joined by shard name; REPORT writes the sample's
 * outputs to <outdir>/<sample>/, the same files as `virnucpro run`. Every step is one call of the
 * `virnucpro` command; this file only checks parameters and wires channels.
 */

include { MAKE_TEST_MODELS } from './modules/make_test_models'
include { PREPARE } from './modules/prepare'
include { EMBED_DNA } from './modules/embed_dna'
include { EMBED_PROTEIN } from './modules/embed_protein'
include { PREDICT } from './modules/predict'
include { REPORT } from './modules/report'

workflow {
    if (params.help) {
        log.info(helpMessage())
    }
    else {
        def samples = checkParameters(params)
        log.info(summary(params, samples))

        def reads = channel.fromList(samples)
        def dnabert_model = channel.empty()
        def esm_model = channel.empty()
        def classifier = channel.empty()
        def versions = channel.empty()
        if (params.make_test_models) {
            MAKE_TEST_MODELS()
            dnabert_model = MAKE_TEST_MODELS.out.dnabert.map { dir -> [dir.name, dir] }
            esm_model = MAKE_TEST_MODELS.out.esm.map { dir -> [dir.name, dir] }
            classifier = MAKE_TEST_MODELS.out.classifier.map { dir -> [dir.name, dir] }
            versions = versions.mix(MAKE_TEST_MODELS.out.versions)
        }
        else {
            dnabert_model = channel.value(modelInput('dnabert_model', params.dnabert_model))
            esm_model = channel.value(modelInput('esm_model', params.esm_model))
            classifier = channel.value(modelInput('classifier', params.classifier ?: publishedClassifier(params.chunk_size)))
        }

        PREPARE(reads)

        EMBED_DNA(PREPARE.out.nucleotide.flatMap { meta, shards -> shardGroups(meta, shards, params.shards_per_task) }, dnabert_model)
        EMBED_PROTEIN(PREPARE.out.protein.flatMap { meta, shards -> shardGroups(meta, shards, params.shards_per_task) }, esm_model)

        // [[sample, shard], meta, file] per embedding file, so the two kinds join by shard name
        def dnabert_by_shard = EMBED_DNA.out.embeddings.flatMap { meta, files -> byShard(meta, files) }
        def esm_by_shard = EMBED_PROTEIN.out.embeddings.flatMap { meta, files -> byShard(meta, files) }
        PREDICT(
            dnabert_by_shard.join(esm_by_shard, failOnMismatch: true, failOnDuplicate: true)
                .map { key, meta, dnabert, _meta, esm -> [meta, key[1], dnabert, esm] },
            classifier
        )

        // Sorted, so a resumed run sees the same inputs and reuses the finished report
        def scores = PREDICT.out.scores
            .map { meta, file -> [meta.id, file] }
            .groupTuple()
            .map { id, files -> [id, files.sort(false) { f -> f.name }] }
        def report_inputs = PREPARE.out.prepared
            .map { meta, prepared -> [meta.id, meta, prepared] }
            .join(reads.map { meta, file -> [meta.id, file] })
            .join(scores, remainder: true)
            .map { _id, meta, prepared, file, files -> [meta, file, prepared, files ?: []] }
        REPORT(report_inputs, runInfo(params))

        versions
            .mix(PREPARE.out.versions, EMBED_DNA.out.versions, EMBED_PROTEIN.out.versions, PREDICT.out.versions, REPORT.out.versions)
            .map { file -> file.text }
            .unique()
            .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: false)
    }
}

/*
 * Parameter checks: each problem stops the run before any task starts, with one message that names
 * the parameter, the value and what to do.
 */
def checkParameters(settings) {
    def known = schemaParameters().keySet()
    def unknown = settings.keySet().findAll { name -> !(name in known) }
    // Nextflow stores --chunk-size both as 'chunk-size' and 'chunkSize': report the spelling given
    def given = unknown.findAll { name -> !unknown.contains(kebabCase(name)) || name.contains('-') }
    if (given) {
        def first = given.sort()[0]
        def snake = kebabCase(first).replace('-', '_')
        def hint = snake in known ? " (did you mean --${snake}? parameters use underscores)" : ''
        error("Unknown parameter ${given.sort().collect { name -> '--' + name }.join(', ')}${hint}; see --help")
    }

    // `--slurm_options --account=x` makes Nextflow read a bare flag (true): ask for a value
    def schema = schemaParameters()
    schema.findAll { name, spec -> spec.type == 'string' && settings[name] instanceof Boolean }.each { name, _spec ->
        error("--${name} needs a value; write values that start with '-' as --${name}='--option=value'")
    }
    checkChoice(settings, 'chunk_size', ['300', '500'], 'the chunk sizes of the published classifiers')
    checkChoice(settings, 'precision', ['fp32', 'bf16', 'fp16', 'fp8'], 'fp32 matches the published classifier')
    checkInteger(settings, 'shard_size', 1)
    checkInteger(settings, 'shards_per_task', 1)
    checkInteger(settings, 'dnabert_batch_size', 1)
    checkInteger(settings, 'esm_tokens_per_batch', 1)
    checkInteger(settings, 'gpus', 0)
    checkInteger(settings, 'cpu_workers', 1)
    checkInteger(settings, 'max_retries', 0)
    checkFraction(settings, 'min_viral_fraction')
    checkInteger(settings, 'region_max_gap', 0)
    checkInteger(settings, 'region_min_chunks', 1)
    checkFraction(settings, 'confidence_high')
    checkFraction(settings, 'confidence_medium')
    if (settings.confidence_medium.toString().toBigDecimal() > settings.confidence_high.toString().toBigDecimal()) {
        error("--confidence_medium (${settings.confidence_medium}) must not be above --confidence_high (${settings.confidence_high})")
    }
    checkFraction(settings, 'target_fdr')
    def target = settings.target_fdr.toString().toBigDecimal()
    if (target <= 0 || target >= 1) {
        error("--target_fdr must be between 0 and 1 (exclusive), got '${settings.target_fdr}'")
    }
    if (settings.calibration) {
        checkShellSafe('calibration', settings.calibration)
        def calibration = file(settings.calibration.toString())
        if (!calibration.isFile() || !calibration.canRead()) {
            error("--calibration '${settings.calibration}': no readable file there (give the calibration.json that `virnucpro calibrate` wrote)")
        }
    }
    if (!settings.make_test_models) {
        modelInput('dnabert_model', settings.dnabert_model)
        modelInput('esm_model', settings.esm_model)
        checkClassifier(settings.classifier ?: publishedClassifier(settings.chunk_size))
    }
    return inputSamples(settings)
}

// [[id: sample], file] for every file that --input names; the sample is the file name without
// its sequence and compression extensions.
def inputSamples(settings) {
    if (settings.input == null || settings.input == true || settings.input.toString().trim() == '') {
        error("Missing required parameter --input: a FASTA/FASTQ file (plain or gzip) or a quoted glob such as --input 'reads/*.fa.gz'")
    }
    def pattern = settings.input.toString()
    def isGlob = pattern =~ /[*?\[{]/
    def matches = files(pattern).findAll { f -> f.exists() }
    if (!matches) {
        error(isGlob ? "--input '${pattern}': no file matches" : "--input '${pattern}': no such file")
    }
    def folders = matches.findAll { f -> f.isDirectory() }
    if (folders) {
        error("--input '${pattern}': ${folders[0]} is a folder; give files or a glob such as '${folders[0]}/*.fa'")
    }
    def samples = matches.sort { f -> f.toString() }.collect { f -> [[id: sampleName(f)], f] }
    samples.each { sample -> checkShellSafe('input', sample[1].name) }
    def byName = samples.groupBy { sample -> sample[0].id }
    def clash = byName.find { _name, group -> group.size() > 1 }
    if (clash) {
        error("--input '${pattern}': ${clash.value.collect { s -> s[1].name }.join(' and ')} would both be sample '${clash.key}' (results go to <outdir>/<sample>/); rename one")
    }
    return samples
}

def sampleName(file) {
    return file.name.replaceFirst(/(?i)\.(gz|bgz|bz2)$/, '').replaceFirst(/(?i)\.(fasta|fas|fa|fna|ffn|fastq|fq|txt)$/, '')
}

def checkChoice(settings, name, choices, why) {
    def value = settings[name].toString()
    if (!(value in choices)) {
        def allowed = choices.size() == 2 ? choices.join(' or ') : "one of ${choices.join(', ')}"
        error("--${name} must be ${allowed} (${why}), got '${value}'")
    }
}

def checkFraction(settings, name) {
    def value = settings[name].toString()
    if (!value.isBigDecimal() || value.toBigDecimal() < 0 || value.toBigDecimal() > 1) {
        error("--${name} must be a number from 0 to 1, got '${value}'")
    }
}

def checkInteger(settings, name, minimum) {
    def value = settings[name].toString()
    if (!(value ==~ /\d+/) || value.toBigInteger() < minimum) {
        error("--${name} must be a whole number of at least ${minimum}, got '${value}'")
    }
}

// Values end up quoted in task scripts: refuse the characters that could break out of the quotes.
def checkShellSafe(name, value) {
    if (value.toString() =~ /['\n\r]/) {
        error("--${name} '${value}': quotes and line breaks are not allowed in names; rename it")
    }
}

// A model as a task input: [name to give `virnucpro`, files to stage]. Local paths are staged
// (so containers and cluster nodes see them); URLs and hub ids are resolved by the task.
def modelInput(name, spec) {
    def text = spec.toString()
    checkShellSafe(name, text)
    if (text ==~ /(?i)^(https?|ftp):\/\/.+/) {
        return [text, []]
    }
    def local = file(text)
    if (local.exists()) {
        if (!local.canRead()) {
            error("--${name} '${text}': not readable")
        }
        return [local.name, local]
    }
    if (text ==~ /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/ && !(text ==~ /(?i).*\.(pth|pt|safetensors|json|bin)$/)) {
        return [text, []]
    }
    error("--${name} '${text}': no such file or folder (give a local path, a URL or a Hugging Face hub id such as org/name)")
}

def checkClassifier(spec) {
    def model = modelInput('classifier', spec)
    def local = model[1]
    if (local) {
        def readable = local.isDirectory()
            ? ['config.json', 'model.safetensors'].every { name -> local.resolve(name).canRead() }
            : local.size() > 0
        if (!readable) {
            error("--classifier '${spec}': cannot read a classifier there (give a .pth file, or a folder with config.json and model.safetensors as `virnucpro convert-classifier` writes)")
        }
    }
}

// The published classifiers, from the original repository at the commit that added them.
def publishedClassifier(chunkSize) {
    return "https://github.com/Li-Jing-1997/VirNucPro/raw/0f93f2755a7ea1acd3ff1bcf182892f960ef3326/${chunkSize}_model.pth"
}

def kebabCase(name) {
    return name.replaceAll(/([A-Z])/, '-$1').toLowerCase()
}

// Shards in name order, `perTask` per group: [meta + group number, files]
def shardGroups(meta, shards, perTask) {
    def sorted = (shards instanceof List ? shards : [shards]).sort(false) { f -> f.name }
    def groups = sorted.collate(perTask as int)
    return (0..<groups.size()).collect { i -> [meta + [group: i + 1], groups[i]] }
}

// 'shard_00007' from any shard_00007.* file
def byShard(meta, files) {
    def sample = [id: meta.id]
    return (files instanceof List ? files : [files]).collect { f -> [[meta.id, f.name.replaceFirst(/\..*$/, '')], sample, f] }
}

// What REPORT merges into run.json, as base64 (safe to put in a task script whatever the
// parameters hold). Only values that stay the same on a resumed run, so the finished report is
// reused.
def runInfo(settings) {
    def recorded = settings.keySet().findAll { name -> !(name in ['help', 'outdir', 'publish_dir_mode']) && !(name =~ /[A-Z-]/) }
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

def schemaParameters() {
    def schema = new groovy.json.JsonSlurper().parseText(file("${projectDir}/nextflow_schema.json").text)
    return schema['$defs'].values().collectEntries { group -> group.properties }
}

def helpMessage() {
    def lines = [
        "VirNucPro, the pipeline ${workflow.manifest.version}: find viral sequences with VirNucPro's method",
        '',
        "  nextflow run . --input 'reads/*.fa.gz' --outdir results [-profile gpu,docker|singularity|conda,slurm]",
        '',
    ]
    def schema = new groovy.json.JsonSlurper().parseText(file("${projectDir}/nextflow_schema.json").text)
    schema['$defs'].values().each { group ->
        lines << "${group.title}:"
        group.properties.each { name, spec ->
            if (!spec.hidden) {
                def fallback = spec.containsKey('default') ? " [default: ${spec.default}]" : ''
                lines << "  --${name.padRight(24)} ${spec.description}${fallback}"
            }
        }
        lines << ''
    }
    lines << 'Profiles: test, docker, singularity, apptainer, conda, gpu, slurm. See README.md, "Running with Nextflow".'
    return lines.join('\n')
}

def summary(settings, samples) {
    return [
        "VirNucPro, the pipeline ${workflow.manifest.version}",
        "  samples    : ${samples.size()} (${samples.collect { s -> s[0].id }.take(5).join(', ')}${samples.size() > 5 ? ', ...' : ''})",
        "  outdir     : ${settings.outdir}",
        "  models     : ${settings.make_test_models ? 'test models (virnucpro make-test-models)' : "${settings.dnabert_model}, ${settings.esm_model}, ${settings.classifier ?: "published ${settings.chunk_size}_model.pth"}"}",
        "  chunk size : ${settings.chunk_size}, precision ${settings.precision}, GPUs per task ${settings.gpus}",
    ].join('\n')
}
