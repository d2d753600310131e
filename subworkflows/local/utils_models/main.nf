/*
 * The models of a run, as task inputs, and the checks on them that need no task: each of
 * --dnabert_model, --esm_model and --classifier is a local file or folder (staged into the tasks),
 * a URL or a Hugging Face hub id (resolved by the tasks); a classifier must have been trained on
 * chunks of --chunk_size; offline, every model must already be in a local cache; a --calibration
 * must fit the classifier, the chunk size and --target_fdr.
 */

include { checkShellSafe } from '../utils_params_schema'

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
// fail inside the first embedding task, after the rest of the run has started: say so now.
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
