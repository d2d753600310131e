/*
 * Parameter checks read from nextflow_schema.json: one checker for every parameter the schema
 * declares, so a bound or a choice is written once, in the schema, and --help, the checks and the
 * schema cannot disagree. What it checks, per parameter that has a value (given, or set by a
 * profile or config file):
 *   type     string: a value, not a bare flag (`--slurm_options --account=x` reads as true);
 *            integer: a whole number, within 32 bits (what every tool of a task takes);
 *            number: a decimal number; boolean: anything (Groovy truth, as Nextflow reads it)
 *   enum     one of the listed values
 *   minimum, maximum, exclusiveMinimum, exclusiveMaximum   for integers and numbers
 *   pattern  a regular expression found in the value (JSON Schema's meaning); the property's
 *            errorMessage, where it has one, says what the value must be
 * and every parameter given must be one the schema declares. Each problem stops the run before any
 * task starts, with one line naming the parameter, what it must be and the value given.
 * (The nf-schema plugin does this too, but it cannot be installed offline.)
 */

// The largest whole number any `integer` parameter may take: the tools read them as 32-bit ints
def integerLimit() {
    return 2147483647
}

// name -> its schema entry, for every parameter of every group, in the schema's order
def schemaParameters(schemaFile) {
    return schemaGroups(schemaFile).values().collectEntries { group -> group.properties }
}

def schemaGroups(schemaFile) {
    return new groovy.json.JsonSlurper().parseText(file(schemaFile).text)['$defs']
}

// Stops the run at the first parameter that the schema does not declare or that breaks its entry
def validateParameters(settings, schemaFile) {
    def schema = schemaParameters(schemaFile)
    def unknown = settings.keySet().findAll { name -> !(name in schema.keySet()) }
    // Nextflow stores --chunk-size both as 'chunk-size' and 'chunkSize': report the spelling given
    def given = unknown.findAll { name -> !unknown.contains(kebabCase(name)) || name.contains('-') }.sort()
    if (given) {
        def snake = kebabCase(given[0]).replace('-', '_')
        def hint = snake in schema.keySet() ? " (did you mean --${snake}? parameters use underscores)" : ''
        error("Unknown parameter ${given.collect { name -> '--' + name }.join(', ')}${hint}; see --help")
    }
    schema.each { name, spec ->
        def problem = settings[name] == null ? null : parameterProblem(name, settings[name], spec)
        if (problem) {
            error(problem)
        }
    }
}

// What is wrong with `value` as parameter `name` of this schema entry, as one line; null when nothing
def parameterProblem(name, value, spec) {
    def text = value.toString()
    if (spec.type == 'string' && value instanceof Boolean) {
        return "--${name} needs a value; write values that start with '-' as --${name}='--option=value'"
    }
    if (spec['enum'] != null) {
        def choices = spec['enum'].collect { choice -> choice.toString() }
        def allowed = choices.size() == 2 ? choices.join(' or ') : "one of ${choices.join(', ')}"
        return text in choices ? null : "--${name} must be ${allowed}, got '${text}'"
    }
    if (spec.type == 'integer') {
        def bounds = spec.maximum == null && spec.exclusiveMaximum == null ? spec + [maximum: integerLimit()] : spec
        def fits = text ==~ /-?\d+/ && withinBounds(text.toBigInteger(), bounds)
        return fits ? null : "--${name} must be a whole number${boundsText(bounds)}, got '${text}'"
    }
    if (spec.type == 'number') {
        def fits = text.isBigDecimal() && withinBounds(text.toBigDecimal(), spec)
        return fits ? null : "--${name} must be a number${boundsText(spec)}, got '${text}'"
    }
    if (spec.pattern != null && !java.util.regex.Pattern.compile(spec.pattern).matcher(text).find()) {
        return "--${name} ${spec.errorMessage ?: "must match the pattern ${spec.pattern}"}, got '${text}'"
    }
    return null
}

def withinBounds(number, spec) {
    return (spec.minimum == null || number >= (spec.minimum as BigDecimal))
        && (spec.maximum == null || number <= (spec.maximum as BigDecimal))
        && (spec.exclusiveMinimum == null || number > (spec.exclusiveMinimum as BigDecimal))
        && (spec.exclusiveMaximum == null || number < (spec.exclusiveMaximum as BigDecimal))
}

// ' from 1 to 2147483647', ' between 0 and 1 (exclusive)', ' of at least 0', ...
def boundsText(spec) {
    def low = spec.minimum != null ? spec.minimum : spec.exclusiveMinimum
    def high = spec.maximum != null ? spec.maximum : spec.exclusiveMaximum
    def lowInclusive = spec.minimum != null
    def highInclusive = spec.maximum != null
    if (low != null && high != null && lowInclusive == highInclusive) {
        return lowInclusive ? " from ${low} to ${high}" : " between ${low} and ${high} (exclusive)"
    }
    def parts = []
    if (low != null) {
        parts << (lowInclusive ? "at least ${low}" : "above ${low}")
    }
    if (high != null) {
        parts << (highInclusive ? "at most ${high}" : "below ${high}")
    }
    return parts ? " of ${parts.join(' and ')}" : ''
}

def kebabCase(name) {
    return name.replaceAll(/([A-Z])/, '-$1').toLowerCase()
}

// Values end up quoted in task scripts: refuse the characters that could break out of the quotes.
def checkShellSafe(name, value) {
    if (value.toString() =~ /['\n\r]/) {
        error("--${name} '${value}': quotes and line breaks are not allowed in names; rename it")
    }
}
