"""The curator's view: `curate report OUT` writes a static HTML report of a dataset.

- `scan`: one streaming pass over the committed shards (Arrow batches, numeric columns kept
  as arrays) -> `DatasetStats` (funnel, distributions, rejects with examples, runs);
- `figures`: those stats as plotly figures (binned, so a 100K-row dataset embeds no 100K points);
- `browse`: the sample browser's data, a seeded sample of videos with their QA items, paged;
- `frames`: keyframes and evidence-span frames decoded from the media the rows point at;
- `build`: writes the page, its assets (plotly.min.js from the plotly package, our app.js and
  style.css) and the pages of samples beside it: the report opens from disk, offline.
"""
