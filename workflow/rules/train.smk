rule train:
    input:
        a=pair_dataset("a"),
        b=pair_dataset("b"),
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
    params:
        settings=PARAMS["train"],
        people=pair_people,
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
        mem_mb=8000,
    shell:
        "facepipe train --a {input.a:q} --b {input.b:q} --people {params.people}"
        " --out results/models/{wildcards.pair} --checkpoints {params.checkpoints:q} 2>&1 | tee {log:q}"
