rule download:
    input:
        source_input,
    output:
        directory("results/download/{source}"),
    params:
        location=source_location,
        kind=source_kind,
        settings=dependency(PARAMS, "download"),
        code=CODE["download"],
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/download/{source}.log",
    resources:
        downloads=1,
        mem_mb=1000,
        runtime=60,
    threads: 1
    shell:
        "facepipe download --source {params.location:q} --kind {params.kind} --id {wildcards.source}"
        " --out {output:q} 2>&1 | tee {log:q}"
