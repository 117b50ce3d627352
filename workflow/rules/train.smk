rule train:
    input:
        unpack(train_inputs),
    output:
        weights="results/models/{pair}/weights.msgpack",
        model="results/models/{pair}/model.json",
        preview=report(
            "results/models/{pair}/preview.png",
            caption="../report/preview.rst",
            category="Pairs",
            labels={"pair": "{pair}", "figure": "preview grid"},
        ),
        loss_plot=report(
            "results/models/{pair}/loss.png",
            caption="../report/loss.rst",
            category="Pairs",
            labels={"pair": "{pair}", "figure": "training loss"},
        ),
        timelapse="results/models/{pair}/timelapse.mp4",
        loss="results/models/{pair}/loss.csv",
        metrics="results/models/{pair}/metrics.json",
    wildcard_constraints:
        pair=pair_names(),
    params:
        settings=train_settings,
        code=CODE["train"],
        role=pair_people,
        start=start_args,
        out=model_folder,
        # Not an output: Snakemake would delete it before a rerun, and it is what
        # lets a rerun (or more steps) continue instead of starting over.
        checkpoints="results/checkpoints/{pair}",
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/train/{pair}.log",
    benchmark:
        "logs/benchmarks/train/{pair}.tsv"
    threads: 2
    resources:
        **train_resources("train"),
    # tee -i: Ctrl-C reaches the whole job; the log must outlive it, or the training's
    # next line would break the pipe before it saves where it stopped.
    shell:
        "{resources.launcher} facepipe train --a {input.a:q} --b {input.b:q} {params.role} {params.start}"
        " --out {params.out:q} --checkpoints {params.checkpoints:q} 2>&1 | tee -i {log:q}"


# One model learns the faces of many people, on both sides; pairs start from it
# (train.init_from: pretrain). The same stage, with pretrain.steps.
use rule train as pretrain with:
    input:
        a=pretrain_datasets,
        b=pretrain_datasets,
    output:
        weights="results/models/pretrain/weights.msgpack",
        model="results/models/pretrain/model.json",
        preview=report(
            "results/models/pretrain/preview.png",
            caption="../report/pretrain.rst",
            category="Pairs",
            labels={"pair": "pretrain", "figure": "preview grid"},
        ),
        loss_plot=report(
            "results/models/pretrain/loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pairs",
            labels={"pair": "pretrain", "figure": "training loss"},
        ),
        timelapse="results/models/pretrain/timelapse.mp4",
        loss="results/models/pretrain/loss.csv",
        metrics="results/models/pretrain/metrics.json",
    params:
        settings=pretrain_settings,
        code=CODE["train"],
        role="--pretrain",
        start="",
        out=model_folder,
        checkpoints="results/checkpoints/pretrain",
    resources:
        **train_resources("pretrain"),
    log:
        "logs/train/pretrain.log",
    benchmark:
        "logs/benchmarks/train/pretrain.tsv"
