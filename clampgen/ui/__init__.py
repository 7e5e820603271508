"""`clampgen ui`: a local web page (Gradio) that starts runs and comparisons, shows every
variant's frame, loss and out-of-range share as the run goes, stops and resumes them, and shows
the runs under the results folder.

    clampgen ui                       # http://127.0.0.1:7860, the bundled models, ./results
    python -m clampgen.ui --port 8000 --results results --threads 1

`paths` (what may be served), `gallery` (the results folder, a page at a time), `form` (the
page's fields to a GenerateConfig and back), `jobs` (the queue and its worker, calling the same
library functions as generate.py), `app` (the page's handlers), `layout` (its Gradio
components), `server` (the command line). Only `app` and `layout` import gradio (`server` once
it starts them).
"""
