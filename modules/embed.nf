/*
 * Both embeddings of a group of shards with `virnucpro embed`, and their scores: each worker (one
 * per GPU the task was given, else --cpu_workers processes on the CPU) loads DNABERT-S, ESM-2 and
 * the classifier once and scores each shard as soon as its embeddings exist (the classifier on the
 * worker's CPU: the scores `virnucpro predict` gives, without writing the embeddings and reading
 * them back). With --keep_embeddings the embedding files are written too, and published.
 *
 * Only what decides the results goes into the task's cache key (the shards, the models and their
 * identities, the classifier, task.ext.args: precision). What changes only speed comes from the
 * task's resources and the environment, so changing it keeps finished tasks on -resume: the devices
 * and workers from task.accelerator and task.cpus, the batch sizes from VIRNUCPRO_DNABERT_BATCH_SIZE
 * and VIRNUCPRO_ESM_TOKENS_PER_BATCH (nextflow.config, env), halved on each retry after an
 * out-of-memory kill. On the local executor the task first claims its GPUs (virnucpro claim-gpus),
 * so tasks running side by side get disjoint ones.
 */
process EMBED {
    tag "${meta.id}:${meta.group}"
    label 'gpu'

    input:
    tuple val(meta), path(shards, stageAs: 'shards/*', arity: '2..*')
    tuple val(dnabert), val(dnabert_revision), path(dnabert_files)
    tuple val(esm), val(esm_revision), path(esm_files)
    tuple val(classifier), path(classifier_files)

    output:
    tuple val(meta), path('embeddings/*.scores.parquet'), emit: scores
    tuple val(meta), path('embeddings/shard_*.{dnabert,esm}.parquet'), optional: true, emit: embeddings
    path 'versions.yml', emit: versions

    script:
    def claim = task.executor == 'local' && task.accelerator ? "virnucpro claim-gpus ${task.accelerator.request} -- " : ''
    def devices = task.ext.devices ?: (task.accelerator ? 'cuda' : 'cpu')
    def speed = "--devices ${devices} --workers ${task.accelerator ? 1 : task.cpus}"
    def models = [
        dnabert_revision ? "--dnabert-revision '${dnabert_revision}'" : '',
        esm_revision ? "--esm-revision '${esm_revision}'" : '',
        "--classifier '${classifier}'",
    ].join(' ')
    """
    halve() { local value=\$(( \$1 >> ${task.attempt - 1} )); echo \$(( value > 0 ? value : 1 )); }

    ${claim}virnucpro embed shards/* --outdir embeddings --dnabert-model '${dnabert}' --esm-model '${esm}' ${models} ${task.ext.args} ${speed} \\
        --dnabert-batch-size \$(halve \$VIRNUCPRO_DNABERT_BATCH_SIZE) --esm-tokens-per-batch \$(halve \$VIRNUCPRO_ESM_TOKENS_PER_BATCH)

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
        torch: \$(python3 -c 'from importlib.metadata import version; print(version("torch"))')
    END_VERSIONS
    """

    stub:
    def written = task.ext.args.contains('--keep-embeddings') ? 'scores dnabert esm' : 'scores'
    """
    mkdir -p embeddings
    for shard in shards/*.nucleotide.fa; do
        name="\$(basename "\$shard" .nucleotide.fa)"
        for kind in ${written}; do touch "embeddings/\$name.\$kind.parquet"; done
    done

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        virnucpro: \$(virnucpro --version | sed 's/^virnucpro //')
    END_VERSIONS
    """
}
