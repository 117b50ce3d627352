rule frames:
    input:
        clip_download,
    output:
        directory("results/frames/{clip}"),
    params:
        settings=clip_settings,
        code=CODE["frames"],
        clip=clip_args,
    conda:
        "../envs/facepipe.yaml"
    log:
        "logs/frames/{clip}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    shell:
        "facepipe frames --download {input:q} --out {output:q} {params.clip} 2>&1 | tee {log:q}"
