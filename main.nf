#!/usr/bin/env nextflow
/*
 * VirNucPro, the pipeline: find viral sequences with VirNucPro's method.
 *
 *   nextflow run . --input 'reads/*.fa.gz' --outdir results -profile gpu,docker
 *
 * Per sample (one input file, or the files of one samplesheet sample): PREPARE chunks and
 * translates into shards; shards go in groups of --shards_per_task to EMBED (both models and the
 * classifier, one worker per GPU of the task: each shard is scored where its embeddings are made,
 * and the embeddings are kept only with --keep_embeddings); REPORT writes the sample's outputs to
 * <outdir>/<sample>/, the same files as `virnucpro run`, as soon as that sample's groups are
 * scored. A failed task stops only its own sample; the run ends with a line per sample. Every
 * step is one call of the `virnucpro` command; this file only checks parameters and wires channels.
 */

include { MAKE_TEST_MODELS } from './modules/make_test_models'
include { MODEL_IDENTITY } from './modules/model_identity'
include { PREPARE } from './modules/prepare'
include { EMBED } from './modules/embed'
include { REPORT } from './modules/report'

workflow {
    if (params.help) {
        log.info(helpMessage())
    }
    else {
        def samples = checkParameters(params, args)
        log.info(summary(params, samples))
        if ((params.gpus as int) > 0) {
            // Shared by the embedding tasks of this host (virnucpro claim-gpus); made before any
            // container mounts it
            file(params.gpu_lock_dir).mkdirs()
        }

        def reads = channel.fromList(samples)
        def dnabert_model = channel.empty()
        def esm_model = channel.empty()
        def classifier = channel.empty()
        def versions = channel.empty()
        def local_models = channel.empty()
        if (params.make_test_models) {
            MAKE_TEST_MODELS()
            local_models = MAKE_TEST_MODELS.out.dnabert.map { dir -> ['dnabert', dir] }
                .mix(MAKE_TEST_MODELS.out.esm.map { dir -> ['esm', dir] })
            classifier = MAKE_TEST_MODELS.out.classifier.map { dir -> [dir.name, dir] }
            versions = versions.mix(MAKE_TEST_MODELS.out.versions)
        }
        else {
            def dnabert = modelInput('dnabert_model', params.dnabert_model)
            def esm = modelInput('esm_model', params.esm_model)
            classifier = channel.value(modelInput('classifier', params.classifier ?: publishedClassifier(params.chunk_size)))
            local_models = channel.fromList([['dnabert', dnabert[1]], ['esm', esm[1]]].findAll { _kind, files -> files })
            dnabert_model = dnabert[1] ? channel.empty() : channel.value([dnabert[0], params.dnabert_revision ?: '', []])
            esm_model = esm[1] ? channel.empty() : channel.value([esm[0], params.esm_revision ?: '', []])
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

        PREPARE(reads)

        def shard_groups = PREPARE.out.shards.flatMap { meta, shards -> shardGroups(meta, shards, params.shards_per_task) }
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
        def report_inputs = reads
            .map { meta, files -> [meta.id, meta, files] }
            .join(PREPARE.out.tables.map { meta, tables -> [meta.id, tables] })
            .join(scored.mix(unscored))
            // REPORT's memory follows the sample's size, read off prepare's counts
            .map { _id, meta, files, tables, scores -> [meta + sampleCounts(tables), files, tables, scores] }
        def calibration = params.calibration ? channel.value(file(params.calibration)) : channel.value([])
        REPORT(report_inputs, runInfo(params), calibration)

        versions
            .mix(PREPARE.out.versions, EMBED.out.versions, REPORT.out.versions)
            .map { file -> file.text }
            .unique()
            .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: false)

        // What each sample got to, for the summary at the end
        def reached = java.util.Collections.synchronizedList([])
        PREPARE.out.shards.subscribe { meta, shards -> reached << [meta.id, 'prepared', shardGroups(meta, shards, params.shards_per_task).size()] }
        group_scores.subscribe { meta, _files -> reached << [meta.id, 'embedded', 1] }
        REPORT.out.results.subscribe { meta, _files -> reached << [meta.id, 'reported', 1] }
        def outdir = params.outdir // `params` is not in scope when the handler runs
        workflow.onComplete {
            log.info(completionSummary(samples, reached, outdir))
        }
    }
}

/*
 * Parameter checks: each problem stops the run before any task starts, with one message that names
 * the parameter, the value and what to do.
 */
def checkParameters(settings, positional) {
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
    // An unquoted glob is expanded by the shell: --input gets the first file, the rest arrive here.
    // (Nextflow's launcher turns a trailing -stub-run into `-stub-run true`, leaving a 'true' here.)
    def extra = workflow.stubRun && 'true' in positional ? positional.withIndex().findAll { _value, index -> index != positional.indexOf('true') }.collect { value, _index -> value } : positional
    if (extra) {
        error("Unexpected argument(s) ${extra.take(3).join(' ')}${extra.size() > 3 ? ' ...' : ''}: quote a glob so that Nextflow expands it (--input 'reads/*.fa.gz'), or list the samples in a samplesheet (--input samples.csv)")
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
    checkInteger(settings, 'gpus', 0, 1024)
    checkInteger(settings, 'cpu_workers', 1, 1024)
    checkInteger(settings, 'max_retries', 0, 100)
    if (settings.precision.toString() == 'fp8' && settings.gpus.toString() == '0') {
        error("--precision fp8 needs GPUs of compute capability 9.0 or later (Hopper); the embedding runs on the CPU with --gpus 0: set --gpus or choose fp32, bf16 or fp16")
    }
    checkInteger(settings, 'max_cpus', 1)
    checkResource(settings, 'max_memory', /^\d+(\.\d+)?\s*\.?\s*(B|KB|MB|GB|TB)$/, "a memory such as '256.GB'")
    checkResource(settings, 'max_time', /^\d+(\.\d+)?\s*\.?\s*(ms|s|m|min|h|d)$/, "a duration such as '72.h'")
    if (!settings.gpu_lock_dir.toString().startsWith('/')) {
        error("--gpu_lock_dir must be an absolute path (containers mount it as it is), got '${settings.gpu_lock_dir}'")
    }
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

// [[id: sample], [files]] for every sample of --input: a FASTA/FASTQ file or glob (one sample per
// file, named after the file without its sequence and compression extensions), or a samplesheet.
def inputSamples(settings) {
    if (settings.input == null || settings.input == true || settings.input.toString().trim() == '') {
        error("Missing required parameter --input: a FASTA/FASTQ file (plain or gzip), a quoted glob such as --input 'reads/*.fa.gz', or a samplesheet (.csv with sample,file columns)")
    }
    def pattern = settings.input.toString()
    def samples = pattern ==~ /(?i).*\.csv$/ ? samplesheetSamples(pattern) : fileSamples(pattern)
    samples.each { sample ->
        checkSampleName(pattern, sample[0].id)
        sample[1].each { f -> checkShellSafe('input', f.name) }
    }
    return samples
}

def fileSamples(pattern) {
    def isGlob = pattern =~ /[*?\[{]/
    def matches = files(pattern).findAll { f -> f.exists() }
    if (!matches) {
        error(isGlob ? "--input '${pattern}': no file matches" : "--input '${pattern}': no such file")
    }
    def folders = matches.findAll { f -> f.isDirectory() }
    if (folders) {
        error("--input '${pattern}': ${folders[0]} is a folder; give files or a glob such as '${folders[0]}/*.fa'")
    }
    def samples = matches.sort { f -> f.toString() }.collect { f -> [[id: sampleName(f)], [f]] }
    def byName = samples.groupBy { sample -> sample[0].id }
    def clash = byName.find { _name, group -> group.size() > 1 }
    if (clash) {
        error("--input '${pattern}': ${clash.value.collect { s -> s[1][0].name }.join(' and ')} would both be sample '${clash.key}' (results go to <outdir>/<sample>/); rename one, or use a samplesheet")
    }
    return samples
}

// A CSV with a header naming the columns `sample` and `file`; the rows of one sample are its
// files, read in row order as one input. Relative paths are relative to the samplesheet's folder.
def samplesheetSamples(path) {
    def sheet = file(path)
    if (!sheet.exists()) {
        error("--input '${path}': no such samplesheet")
    }
    def lines = []
    try {
        // A byte-order mark (Excel's "CSV UTF-8" writes one) is not part of the header
        lines = sheet.getText('UTF-8').replaceFirst(/^\uFEFF/, '').readLines().findAll { line -> line.trim() }
    }
    catch (java.io.IOException err) {
        error("--input '${path}': cannot read the samplesheet as UTF-8 text (${err.class.simpleName}: ${err.message})")
    }
    def header = lines ? lines[0].split(',', -1).collect { column -> column.trim() } : []
    if (!('sample' in header && 'file' in header)) {
        error("--input '${path}': a samplesheet needs a header line with the columns sample and file (e.g. 'sample,file'), got '${lines ? lines[0] : ''}'")
    }
    if (lines.size() < 2) {
        error("--input '${path}': the samplesheet lists no sample")
    }
    def filesBySample = [:]
    lines.drop(1).eachWithIndex { line, index ->
        def row = line.split(',', -1).collect { value -> value.trim() }
        def where = "--input '${path}', line ${index + 2}"
        if (row.size() != header.size()) {
            error("${where}: ${row.size()} values for the ${header.size()} columns of the header")
        }
        def sample = row[header.indexOf('sample')]
        def name = row[header.indexOf('file')]
        if (!sample || !name) {
            error("${where}: both sample and file need a value")
        }
        def input = name.startsWith('/') || name ==~ /^\w+:\/\/.*/ ? file(name) : sheet.parent.resolve(name)
        if (!input.exists() || input.isDirectory()) {
            error("${where}: ${input}: ${input.exists() ? 'is a folder' : 'no such file'}")
        }
        // The same file under another name (./a.fa and a.fa, a link) counts as listed twice
        def earlier = (filesBySample[sample] ?: []).find { listed -> sameFile(listed, input) }
        if (earlier != null) {
            error("${where}: ${name} is listed twice for sample '${sample}'${earlier.name == input.name && earlier == input ? '' : " (as ${earlier} too)"}")
        }
        filesBySample[sample] = (filesBySample[sample] ?: []) + [input]
    }
    return filesBySample.collect { sample, inputs -> [[id: sample], inputs] }
}

def sameFile(a, b) {
    try {
        return java.nio.file.Files.isSameFile(a, b)
    }
    catch (java.io.IOException _err) {
        return a.normalize() == b.normalize()
    }
}

def sampleName(file) {
    return file.name.replaceFirst(/(?i)\.(gz|bgz|bz2)$/, '').replaceFirst(/(?i)\.(fasta|fas|fa|fna|ffn|fastq|fq|txt)$/, '')
}

// Sample names become folder names under --outdir
def checkSampleName(pattern, name) {
    if (name in ['', '.', '..'] || name =~ /[\/\\'\n\r]/) {
        error("--input '${pattern}': '${name}' cannot be a sample name (results go to <outdir>/<sample>/): no slashes, quotes or line breaks")
    }
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

// Whole numbers from `minimum` to `maximum` (by default the largest that every tool in a task
// takes: 32-bit; a region setting above it is more chunks than a sequence can have)
def checkInteger(settings, name, minimum, maximum = 2147483647) {
    def value = settings[name].toString()
    if (!(value ==~ /\d+/) || value.toBigInteger() < minimum || value.toBigInteger() > maximum) {
        error("--${name} must be a whole number of at least ${minimum} and at most ${maximum}, got '${value}'")
    }
}

def checkResource(settings, name, format, example) {
    if (!(settings[name].toString().trim() ==~ format)) {
        error("--${name} must be ${example}, got '${settings[name]}'")
    }
}

// Values end up quoted in task scripts: refuse the characters that could break out of the quotes.
def checkShellSafe(name, value) {
    if (value.toString() =~ /['\n\r]/) {
        error("--${name} '${value}': quotes and line breaks are not allowed in names; rename it")
    }
}

// --calibration, before any task: a calibration.json of `virnucpro calibrate` made on chunks of
// --chunk_size by this classifier (where its weights can be read here: a local file or folder, or
// a download or hub cache), with thresholds that meet --target_fdr. REPORT checks it again with the
// package itself; this only moves the refusal before the expensive stages.
def checkCalibration(settings) {
    def name = settings.calibration.toString()
    checkShellSafe('calibration', name)
    def where = "--calibration '${name}'"
    def path = file(name)
    if (!path.isFile() || !path.canRead()) {
        error("${where}: no readable file there (give the calibration.json that `virnucpro calibrate` wrote)")
    }
    def content = null
    try {
        content = new groovy.json.JsonSlurper().parseText(path.getText('UTF-8').replaceFirst(/^\uFEFF/, ''))
    }
    catch (Exception err) {
        error("${where}: not a calibration file of `virnucpro calibrate` (not JSON: ${err.message?.readLines()?.first()})")
    }
    if (!(content instanceof Map) || content.format != 'virnucpro-calibration' || content.version != 1) {
        error("${where}: not a calibration file of `virnucpro calibrate` (format ${content instanceof Map ? content.format : 'none'})")
    }
    def made = content.provenance instanceof Map ? content.provenance : [:]
    def identified = made.classifier_sha256 instanceof String && made.classifier_sha256 ==~ /[0-9a-f]{64}/
    if (!identified || !(made.chunk_size instanceof Integer)) {
        error("${where}: records no chunk size and classifier (made by an earlier version?); calibrate again")
    }
    if (made.chunk_size.toString() != settings.chunk_size.toString()) {
        error("${where}: calibrated on ${made.chunk_size} bp chunks, but the chunks are ${settings.chunk_size} bp (--chunk_size); calibrate on chunks of this size")
    }
    def weights = settings.make_test_models ? null : classifierWeights(settings.classifier ?: publishedClassifier(settings.chunk_size), settings.classifier_revision)
    if (weights != null) {
        def digest = fileSha256(weights)
        if (digest != made.classifier_sha256) {
            error("${where}: calibrated for another classifier (sha256 ${made.classifier_sha256.take(12)}..., --classifier ${weights.name}: ${digest.take(12)}...); calibrate this classifier's scores")
        }
    }
    def target = settings.target_fdr.toString().toBigDecimal()
    def meets = false
    try {
        meets = meetsTarget(content, target)
    }
    catch (Exception err) {
        error("${where}: not a calibration file of `virnucpro calibrate` (its counts: ${err.class.simpleName})")
    }
    if (!meets) {
        error("${where}: no chunk threshold and share of viral chunks reach an FDR of ${settings.target_fdr} on the calibration set; give a larger --target_fdr")
    }
}

// The weights file `virnucpro` identifies a classifier by (its classifier_sha256), where it can be
// read before any task: a local file or folder, a URL already downloaded, a hub id in the cache.
def classifierWeights(spec, revision) {
    def text = spec.toString()
    def folder = null
    if (text ==~ /(?i)^(https?|ftp):\/\/.+/) {
        def environment = System.getenv()
        def root = environment.VIRNUCPRO_CACHE ?: System.getProperty('user.home') + '/.cache/virnucpro'
        def digest = java.security.MessageDigest.getInstance('SHA-256').digest(text.getBytes('UTF-8')).encodeHex().toString()
        def cached = file("${root}/urls/${digest.take(16)}/${text.replaceFirst(/[?#].*$/, '').tokenize('/')[-1]}")
        return cached.isFile() && !(cached.name ==~ /(?i).*\.(zip|tar|tgz|tar\.gz)$/) ? cached : null
    }
    def local = file(text)
    if (local.exists()) {
        folder = local.isDirectory() ? local : null
        if (folder == null) {
            return local
        }
    }
    else if (text ==~ /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/ && hubCached(text, revision ?: 'main')) {
        def environment = System.getenv()
        def home = environment.HF_HOME ?: "${environment.XDG_CACHE_HOME ?: System.getProperty('user.home') + '/.cache'}/huggingface"
        def repo = file(environment.HF_HUB_CACHE ?: "${home}/hub").resolve('models--' + text.replace('/', '--'))
        def ref = repo.resolve("refs/${revision ?: 'main'}")
        folder = repo.resolve("snapshots/${ref.exists() ? ref.text.trim() : revision ?: 'main'}")
    }
    if (folder == null) {
        return null
    }
    def candidates = [folder.resolve('model.safetensors')] + (folder.listFiles().findAll { f -> f.name.endsWith('.pth') }.sort { f -> f.name }) + (folder.listFiles().findAll { f -> f.name.endsWith('.pt') }.sort { f -> f.name })
    return candidates.find { f -> f.isFile() }
}

def fileSha256(path) {
    def md = java.security.MessageDigest.getInstance('SHA-256')
    path.withInputStream { stream ->
        stream.eachByte(1 << 20) { buffer, count -> md.update(buffer, 0, count) }
    }
    return md.digest().encodeHex().toString()
}

// Whether some chunk margin threshold, and at it some share of viral chunks, have an FDR whose
// one-sided 95% Wilson upper bound is at most `target` (how `virnucpro calibrate` chooses them)
def meetsTarget(content, target) {
    def chunk = lowestMeeting(content.chunk_true_positives, content.chunk_false_positives, target)
    if (chunk == null) {
        return false
    }
    return lowestMeeting(content.sequence_true_positives[chunk], content.sequence_false_positives[chunk], target) != null
}

def lowestMeeting(trueCalls, falseCalls, target) {
    def z = 1.6448536269514722d
    def z2 = Math.pow(z, 2)
    return (0..<trueCalls.size()).find { i ->
        def calls = (trueCalls[i] + falseCalls[i]) as double
        if (calls <= 0) {
            return false
        }
        def p = (falseCalls[i] as double) / calls
        def centre = p + z2 / (2 * calls)
        def spread = z * Math.sqrt(p * (1 - p) / calls + z2 / (4 * calls * calls))
        return (centre + spread) / (1 + z2 / calls) <= (target as double)
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

def checkRevision(name, spec, revision) {
    def model = modelInput(name, spec)
    if (revision) {
        checkShellSafe(name.replace('_model', '_revision'), revision)
        if (model[1]) {
            error("--${name.replace('_model', '_revision')} '${revision}' applies to hub models, not to the local folder '${spec}'")
        }
    }
}

def checkClassifier(spec, chunkSize) {
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
    // The chunk length it was trained on, where known: a published file's name (500_model.pth), or
    // the config.json of a converted or trained one (virnucpro's classifier.check_chunk_size, up front)
    def published = spec.toString().tokenize('/').last() =~ /^(\d+)_model\.pth$/
    def trainedOn = published ? published[0][1] : null
    if (local && local.isDirectory()) {
        def config = new groovy.json.JsonSlurper().parse(local.resolve('config.json').toFile())
        trainedOn = config.chunk_size != null ? config.chunk_size.toString() : null
    }
    if (trainedOn != null && trainedOn != chunkSize.toString()) {
        error("--classifier '${spec}': a classifier for ${trainedOn} bp chunks, but the chunks are ${chunkSize} bp (--chunk_size); give the ${chunkSize} bp classifier or --chunk_size ${trainedOn}")
    }
}

// Offline (NXF_OFFLINE or HF_HUB_OFFLINE set), a hub model or URL that no cache holds would only
// fail inside the first embedding or predict task, after the rest of the run has started: say so now.
def checkOfflineModels(settings) {
    def environment = System.getenv()
    def switches = ['NXF_OFFLINE', 'HF_HUB_OFFLINE'].findAll { name -> environment[name]?.toLowerCase() in ['1', 'true', 'yes', 'on'] }
    if (!switches) {
        return
    }
    def hint = "fetch the models where there is network with `virnucpro download-models --outdir DIR` and pass the local folders (--dnabert_model DIR/dnabert-s --esm_model DIR/esm2 --classifier DIR/classifier-${settings.chunk_size})"
    def classifier = settings.classifier ?: publishedClassifier(settings.chunk_size)
    def specs = [
        dnabert_model: [settings.dnabert_model, settings.dnabert_revision],
        esm_model: [settings.esm_model, settings.esm_revision],
        classifier: [classifier, settings.classifier_revision],
    ]
    specs.each { name, spec ->
        def model = modelInput(name, spec[0])
        if (model[1]) {
            return
        }
        def cached = model[0] ==~ /(?i)^(https?|ftp):\/\/.+/ ? urlCached(model[0]) : hubCached(model[0], spec[1] ?: 'main')
        if (!cached) {
            error("--${name} '${model[0]}': the run is offline (${switches.join(', ')} set) and no local cache holds this model; ${hint}")
        }
    }
}

// The Hugging Face cache layout: <hub cache>/models--<org>--<name>/{refs/<branch>,snapshots/<commit>}
def hubCached(id, revision) {
    def environment = System.getenv()
    def home = environment.HF_HOME ?: "${environment.XDG_CACHE_HOME ?: System.getProperty('user.home') + '/.cache'}/huggingface"
    def hub = file(environment.HF_HUB_CACHE ?: "${home}/hub")
    def repo = hub.resolve('models--' + id.replace('/', '--'))
    def ref = repo.resolve("refs/${revision}")
    def commit = ref.exists() ? ref.text.trim() : revision
    def snapshot = repo.resolve("snapshots/${commit}")
    return snapshot.isDirectory() && snapshot.list().size() > 0
}

// `virnucpro` keeps URL downloads in $VIRNUCPRO_CACHE/urls/<first 16 hex of sha256(url)>/<name>
def urlCached(url) {
    def environment = System.getenv()
    def root = environment.VIRNUCPRO_CACHE ?: System.getProperty('user.home') + '/.cache/virnucpro'
    def digest = java.security.MessageDigest.getInstance('SHA-256').digest(url.getBytes('UTF-8')).encodeHex().toString()
    def name = url.replaceFirst(/[?#].*$/, '').tokenize('/')[-1]
    return file("${root}/urls/${digest.take(16)}/${name}").exists()
}

// The published classifiers, from the original repository at the commit that added them.
def publishedClassifier(chunkSize) {
    return "https://github.com/Li-Jing-1997/VirNucPro/raw/0f93f2755a7ea1acd3ff1bcf182892f960ef3326/${chunkSize}_model.pth"
}

def kebabCase(name) {
    return name.replaceAll(/([A-Z])/, '-$1').toLowerCase()
}

// The sample's shards (both files of each) in name order, `perTask` shards per group:
// [meta + [group: number, groups: how many, shards: in this group], files]
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

def shardGroups(meta, shards, perTask) {
    def byShard = shards.groupBy { f -> f.name.replaceFirst(/\..*$/, '') }
    def groups = byShard.keySet().sort().collate(perTask as int)
    return groups.withIndex().collect { names, index ->
        [meta + [group: index + 1, groups: groups.size(), shards: names.size()], names.collectMany { name -> byShard[name].sort { f -> f.name } }]
    }
}

// What REPORT merges into run.json, as base64 (safe to put in a task script whatever the
// parameters hold). Only values that decide the results and stay the same on a resumed run, so
// the finished report is reused: settings that change only speed (batch sizes, GPUs, workers) or
// where tasks run are left out; the embeddings' own metadata records the batch settings they
// were made with, and run.json's models entry carries it.
def runInfo(settings) {
    def speedOrPlace = [
        'help', 'outdir', 'publish_dir_mode', 'publish_embeddings', 'keep_embeddings', 'embedding_dtype', 'trace_report_suffix',
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

// One line per sample: where its results are, or the stage it stopped at.
def completionSummary(samples, reached, outdir) {
    def events = reached.collect { event -> event }
    def lines = ["VirNucPro, the pipeline: ${samples.size()} sample(s)"]
    samples.each { sample ->
        def id = sample[0].id
        def mine = events.findAll { event -> event[0] == id }
        def groups = mine.find { event -> event[1] == 'prepared' }?.getAt(2)
        def embedded = stageCount(mine, 'embedded')
        def state = stageCount(mine, 'reported') ? "finished: ${outdir}/${id}/"
            : groups == null ? 'FAILED in PREPARE'
            : embedded < groups ? "FAILED in EMBED (${embedded} of ${groups} shard groups embedded and scored)"
            : 'FAILED in REPORT'
        lines << "  ${id}: ${state}"
    }
    def failed = lines.count { line -> line.contains(': FAILED in ') }
    if (failed) {
        lines << "${failed} sample(s) failed (the other samples are complete); the failed tasks are marked FAILED in ${outdir}/pipeline_info/execution_trace_*.txt, with their error in the work folder's .command.err. Fix the cause and run again with -resume."
    }
    return lines.join('\n')
}

def stageCount(events, stage) {
    return events.findAll { event -> event[1] == stage }.sum { event -> event[2] } ?: 0
}

def schemaParameters() {
    def schema = new groovy.json.JsonSlurper().parseText(file("${projectDir}/nextflow_schema.json").text)
    return schema['$defs'].values().collectEntries { group -> group.properties }
}

def helpMessage() {
    def lines = [
        "VirNucPro, the pipeline ${workflow.manifest.version}: find viral sequences with VirNucPro's method",
        '',
        "  nextflow run . --input 'reads/*.fa.gz' --outdir results [-profile gpu,docker|podman|singularity|apptainer|conda,slurm]",
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
    lines << 'Profiles: test, docker, podman, singularity, apptainer, conda, gpu, slurm. See README.md, "Running with Nextflow".'
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
