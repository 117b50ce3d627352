rule detect:
    input:
        "results/frames/{clip}",
    output:
        directory("results/faces/{clip}"),
    params:
        settings=dependency(PARAMS, "detect"),
        code=CODE["detect"],
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/detect/{clip}.log",
    benchmark:
        "logs/benchmarks/detect/{clip}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "facepipe detect --frames {input:q} --out {output:q} --threads {threads} 2>&1 | tee {log:q}"
