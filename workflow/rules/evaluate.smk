rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics="results/metrics/{target}.json",
        table=report(
            "results/metrics/{target}.html",
            caption="../report/metrics.rst",
            category="Evaluation",
            labels={"target": "{target}", "figure": "metrics"},
        ),
        strip=report(
            "results/metrics/{target}.jpg",
            caption="../report/strip.rst",
            category="Evaluation",
            labels={"target": "{target}", "figure": "before / after"},
        ),
    params:
        settings=evaluate_settings,
        code=CODE["evaluate"],
        args=evaluate_args,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/evaluate/{target}.log",
    benchmark:
        "logs/benchmarks/evaluate/{target}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "facepipe evaluate {params.args} --out {output.metrics:q} --table {output.table:q}"
        " --strip {output.strip:q} 2>&1 | tee {log:q}"
