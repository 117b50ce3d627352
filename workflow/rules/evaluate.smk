rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        "results/metrics/{target}.json",
    params:
        settings=PARAMS["evaluate"],
        args=evaluate_args,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/evaluate/{target}.log",
    benchmark:
        "logs/benchmarks/evaluate/{target}.tsv"
    threads: 2
    shell:
        "facepipe evaluate {params.args} --out {output:q} 2>&1 | tee {log:q}"
