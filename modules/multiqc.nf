/*
 * MultiQC's report of the run (nf-core's MULTIQC, in this pipeline's shape): the custom content of
 * `virnucpro summarize` (General Statistics columns, the samples table and the sequences bar plot)
 * and the software versions of every task. Writes multiqc/multiqc_report.html and
 * multiqc/multiqc_data/.
 *
 * `multiqc_files`: custom content and any other file MultiQC reads; `versions`: the tasks'
 * versions.yml files (staged as *_mqc_versions.yml, which MultiQC merges into its software versions
 * section, each tool and version once); `multiqc_config`: a MultiQC config file, or [] for none
 * (assets/multiqc_config.yaml keeps sample names as the pipeline names them). Options from
 * task.ext.args.
 */
process MULTIQC {
    tag 'all samples'
    label 'process_single'

    input:
    path multiqc_files, stageAs: 'content/?/*'
    path versions, stageAs: 'versions/task?_mqc_versions.yml'
    path multiqc_config, stageAs: 'config/*'

    output:
    path 'multiqc/multiqc_report.html', emit: report
    path 'multiqc/multiqc_data', emit: data
    path 'versions.yml', emit: versions

    script:
    def config = multiqc_config ? "--config ${multiqc_config}" : ''
    """
    multiqc --force --no-ansi ${config} --outdir multiqc ${task.ext.args ?: ''} .

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        multiqc: \$(multiqc --version | sed 's/^multiqc, version //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p multiqc/multiqc_data
    touch multiqc/multiqc_report.html multiqc/multiqc_data/multiqc_general_stats.txt

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        multiqc: \$(multiqc --version | sed 's/^multiqc, version //')
    END_VERSIONS
    """
}
