"""A run of many samples as one: `summary.tsv`, `summary.json` and `summary.html` with a row per
sample, and MultiQC custom content, all from each sample's own result files (`virnucpro summarize`).

Temporary home: the package is being reorganised by stage; these modules move to `report/`.
"""

# Every file `virnucpro summarize` writes into its --outdir (summary.json, the completion marker,
# last); to be moved into paths.py with the reorganisation.
SUMMARY_TSV = "summary.tsv"
SUMMARY_HTML = "summary.html"
SUMMARY_JSON = "summary.json"
MULTIQC_GENERAL_STATS = "virnucpro_general_stats_mqc.json"
MULTIQC_SEQUENCES = "virnucpro_sequences_mqc.json"
MULTIQC_SAMPLES = "virnucpro_samples_mqc.json"
MULTIQC_FILES = (MULTIQC_GENERAL_STATS, MULTIQC_SEQUENCES, MULTIQC_SAMPLES)
SUMMARY_OUTPUTS = (SUMMARY_TSV, SUMMARY_HTML, *MULTIQC_FILES, SUMMARY_JSON)
