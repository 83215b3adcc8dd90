"""The run directory (docs/rundir.md): everything a run reads and writes lives here.

- `store`: the layout, atomic files, append-only journals and tidy tables (`RunDirectory`);
- `records`: the shape each journal's lines must have, and the checksum each line carries;
- `lock`: the run lock (one writer, or one launch's shards) and the configuration guard's lock;
- `guard`: which folders are run directories (and comparison folders), ``--fresh``, and the refusal
  to mix configurations;
- `finished`: what ``--report-only`` and ``--compare`` verify before reading a run;
- `manifest`: manifest.json — the resolved configuration, its hash, timings and provenance;
- `provenance`: package versions, git commit, device and host of the process that ran;
- `images`: reading saved images back as the scorers see them.

No module here imports a model or a sampler: a finished run directory is read without them.
"""
