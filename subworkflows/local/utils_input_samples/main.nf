/*
 * --input: the samples of a run, read before any task starts. A FASTA/FASTQ file or a quoted glob
 * gives one sample per file, named after the file without its sequence and compression extensions;
 * a samplesheet (.csv with the columns sample and file) gives its samples, each with its files in
 * row order. Every problem stops the run with one line naming the input and what to do.
 */

include { checkShellSafe } from '../utils_params_schema'

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
