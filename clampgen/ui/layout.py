"""The page of `clampgen ui` laid out in Gradio components, wired to clampgen.ui.app's handlers.

    demo = build(Page(queue, "results"))

Two tabs: Run (the form, Run and Stop, every variant's live frame with its step, loss and
out-of-range share, the loss and out-of-range curves, then the comparison's table, the final
images, the side-by-side video and the report's link) and History (the results folder, a page
at a time; a click shows an entry, whose settings load into the form, or which resumes).
"""

import gradio as gr

from clampgen.generators import list_generators
from clampgen.keepers import list_variants
from clampgen.ui.form import Form

MODELS = ["auto", "shapes", "ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50"]  # any open_clip name too
CSS = ".live img, .finals img {image-rendering: pixelated} #status {min-height: 2.5em}"
SYNTAX = (
    "Prompt syntax: `text[:weight[:stop]] | text2 ...` (a negative weight steers away), "
    "`a ^ b` a schedule of phases (`change_every`), `[FILE][:weight[:stop]]` an image prompt "
    "in a phase."
)


def theme():
    """Gradio's default look with the system's fonts: nothing is fetched from the internet."""
    return gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )


def form_inputs(defaults: Form) -> list:
    """The form's components, in Form's field order."""
    prompt = gr.Textbox(
        label="Prompt", lines=2, placeholder="a red circle | blurry:-0.5 ^ a blue star"
    )
    gr.Markdown(SYNTAX)
    clamps = gr.CheckboxGroup(
        list_variants(),
        value=defaults.clamps,
        label="Clamps and keepers: one is a run; several race from the same start",
    )
    with gr.Row():
        generator = gr.Dropdown(list_generators(), value=defaults.generator, label="Generator")
        steps = gr.Textbox("", label="Steps (empty: the generator's)")
    with gr.Row():
        width = gr.Number(defaults.width, label="Width", precision=0, minimum=1)
        height = gr.Number(defaults.height, label="Height", precision=0, minimum=1)
        seed = gr.Textbox("", label="Seed (empty: random)")
        seeds = gr.Number(1, label="Seeds", precision=0, minimum=1)
    with gr.Row():
        model = gr.Dropdown(
            MODELS, value=defaults.model, label="CLIP model", allow_custom_value=True
        )
        pretrained = gr.Textbox(label="Pretrained tag or file (model shapes: bundled)")
    with gr.Accordion("Images: init, image prompts", open=False):
        init = gr.Textbox(defaults.init, label="Init: noise, uniform, gray, gradient or a FILE")
        image_prompts = gr.Textbox(label="Image prompts: FILE[:weight], one per line", lines=2)
        with gr.Row():
            init_upload = gr.UploadButton("Upload an init image", file_types=["image"], size="sm")
            prompt_upload = gr.UploadButton(
                "Upload image prompts", file_types=["image"], file_count="multiple", size="sm"
            )
    with gr.Accordion("More options (TOML: generate.py --config keys)", open=False):
        more = gr.Textbox(
            label='e.g. lr = 0.1, cutn = 32, optimizer = "adamw"',
            lines=3,
            placeholder='lr = 0.1\ncutn = 32\noptimizer = "adamw"',
        )
    fields = [prompt, clamps, generator, steps, width, height, seed, seeds, model, pretrained]
    return [*fields, init, image_prompts, more], (init_upload, prompt_upload)


def live_outputs() -> list:
    """The Run tab's right column: status, live frames, curves, then the results."""
    status = gr.Markdown("", elem_id="status", label="status")
    frames = gr.Gallery(
        label="Live: every variant's current frame",
        columns=4,
        height=330,
        object_fit="contain",
        allow_preview=False,
        format="png",
        elem_classes=["live"],
    )
    numbers = gr.Markdown("", elem_id="numbers", label="numbers")
    with gr.Row():
        loss = gr.LinePlot(x="step", y="loss", color="variant", title="loss", height=240)
        oor = gr.LinePlot(
            x="step", y="out of range %", color="variant", title="out of range", height=240
        )
    text = gr.Markdown("", elem_id="results", label="results")
    finals = gr.Gallery(
        label="Final images",
        columns=4,
        height=300,
        object_fit="contain",
        format="png",
        elem_classes=["finals"],
        visible=False,
    )
    video = gr.Video(label="Side by side", autoplay=True, loop=True, visible=False, height=360)
    return [status, frames, numbers, loss, oor, text, finals, video]


def history_tab(page, tabs, form, outputs):
    """The History tab and its events."""
    # hidden fields rather than gr.State, so that the API (gradio_client) takes and gives them
    number = gr.Number(0, precision=0, visible=False, label="page")
    paths = gr.JSON([], visible=False, label="the page's run directories")
    chosen = gr.Textbox("", visible=False, label="run directory")
    with gr.Row():
        newer = gr.Button("← newer", size="sm")
        line = gr.Markdown("", label="page line")
        older = gr.Button("older →", size="sm")
        refresh = gr.Button("refresh", size="sm")
    entries = gr.Gallery(
        elem_id="history",
        label="Runs and comparisons, newest first",
        columns=5,
        height=420,
        allow_preview=False,
        preview=False,
        object_fit="contain",
    )
    with gr.Row():
        load = gr.Button("Load its settings into the form", interactive=False)
        resume = gr.Button("Resume it", interactive=False)
    text = gr.Markdown("", label="entry", elem_id="entry")
    images = gr.Gallery(
        label="Its images",
        columns=4,
        height=260,
        object_fit="contain",
        elem_classes=["finals"],
        visible=False,
    )
    video = gr.Video(label="Its video", autoplay=True, loop=True, visible=False, height=360)
    shown = [entries, line, number, paths]
    refresh.click(page.history, number, shown, api_name="history")
    newer.click(lambda n: page.history(max(0, n - 1)), number, shown, api_visibility="private")
    older.click(lambda n: page.history(n + 1), number, shown, api_visibility="private")
    entries.select(page.selected, paths, chosen, api_visibility="private").then(
        page.show_run,
        chosen,
        [text, images, video, chosen, resume, load],
        api_name="show_run",
    )
    load.click(page.load_settings, chosen, [*form, tabs], api_name="load_settings")
    resume.click(lambda: gr.Tabs(selected="run"), None, tabs, api_visibility="private").then(
        page.resume,
        chosen,
        outputs,
        api_name="resume",
        concurrency_limit=None,
        show_progress="hidden",
    )
    return shown, number


def build(page) -> gr.Blocks:
    """The whole page over `page` (a clampgen.ui.app.Page)."""
    with gr.Blocks(title="clampgen", analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown("## clampgen · CLIP-guided images, clamps raced side by side")
        with gr.Tabs() as tabs:
            with gr.Tab("Run", id="run"):
                with gr.Row():
                    with gr.Column(scale=2, min_width=340):
                        form, uploads = form_inputs(Form())
                        with gr.Row():
                            run = gr.Button("Run", variant="primary")
                            stop = gr.Button("Stop", variant="stop")
                    with gr.Column(scale=3):
                        outputs = live_outputs()
            with gr.Tab("History", id="history") as history:
                shown, number = history_tab(page, tabs, form, outputs)
        history.select(page.history, number, shown, api_visibility="private")
        run.click(
            page.run,
            form,
            outputs,
            api_name="run",
            concurrency_limit=None,
            show_progress="hidden",
        )
        stop.click(page.stop, None, outputs[0], api_name="stop", concurrency_limit=None)
        init, image_prompts = form[10], form[11]
        uploads[0].upload(lambda f: page.upload(f)[0], uploads[0], init, api_visibility="private")
        uploads[1].upload(
            _added(page), [uploads[1], image_prompts], image_prompts, api_visibility="private"
        )
        demo.load(page.history, number, shown, api_visibility="private")
    return demo


def _added(page):
    """Upload handler of image prompts: their copies' paths added to the field, one a line."""

    def handler(files, image_prompts):
        lines = [ln for ln in (image_prompts or "").splitlines() if ln.strip()]
        return "\n".join(lines + page.upload(files))

    return handler
