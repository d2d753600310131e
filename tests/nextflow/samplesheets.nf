/*
 * Reads every samplesheet listed in --sheets (one path a line) with the pipeline's own reader
 * (subworkflows/local/utils_input_samples) and writes one line per sheet to --results:
 * `ok<TAB>samples<TAB>files` or `<exception class><TAB>message`.
 * One Nextflow start for many sheets: tests/unit/test_properties.py gives it generated ones.
 */

include { samplesheetSamples } from '../../subworkflows/local/utils_input_samples'

workflow {
    def results = file(params.sheets).readLines().collect { path ->
        try {
            def samples = samplesheetSamples(path)
            return "ok\t${samples.size()}\t${samples.sum { sample -> sample[1].size() }}"
        }
        catch (Throwable err) {
            // functions of an included script are called through reflection
            def cause = err instanceof java.lang.reflect.InvocationTargetException && err.cause ? err.cause : err
            return "${cause.class.name}\t${cause.message?.readLines()?.join(' ')}"
        }
    }
    file(params.results).text = results.join('\n') + '\n'
}
