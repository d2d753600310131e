/*
 * Runs the pipeline's parameter checker (validateParameters, subworkflows/local/utils_params_schema)
 * on every case of --cases (a JSON list of parameter maps) against --schema, and writes to
 * --results a JSON list with, per case, null when the checker accepts it or its error message.
 * One Nextflow start for all the cases: tests/pipeline/test_nextflow.py makes them from the schema.
 */

include { validateParameters } from '../../subworkflows/local/utils_params_schema'

workflow {
    def cases = new groovy.json.JsonSlurper().parse(file(params.cases).toFile())
    def results = cases.collect { settings ->
        try {
            validateParameters(settings, params.schema)
            return null
        }
        catch (Throwable err) {
            // functions of an included script are called through reflection
            def cause = err instanceof java.lang.reflect.InvocationTargetException && err.cause ? err.cause : err
            return "${cause.class.name}\t${cause.message}".toString()
        }
    }
    file(params.results).text = groovy.json.JsonOutput.toJson(results)
}
