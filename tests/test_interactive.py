"""Pages re-run in a live kernel, as a reader editing a parameter and running from the top."""

import nbformat
import papermill
import pytest
from nbclient import NotebookClient

from ntkbook import book, config

PAGES = sorted((book.ROOT / "book").glob("*.ipynb"))


def first_cells(path):
    """The parameters cell and the validation cell of a page."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return code[0], code[1]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One live kernel for the module, with a private cache."""
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(notebook, kernel_name="python3", timeout=300)
    cache = tmp_path_factory.mktemp("cache")
    with client.setup_kernel():
        def run(source: str) -> list:
            notebook.cells.append(nbformat.v4.new_code_cell(source))
            cell = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
            return cell.outputs

        run(f"import os; os.environ['NTKBOOK_CACHE_DIR'] = {str(cache)!r}")
        yield run


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_a_page_validates_again_after_its_own_names_exist(kernel, page):
    parameters, validation = first_cells(page)
    kernel(parameters.source)
    kernel(validation.source)
    # names a page defines after its validation cell, as left by a first full run
    kernel("spawn = [0.0, 1.0]; start = 1.0; epochs = [0.0]; seed = 0; final = 6; rows = []")
    kernel(parameters.source + "\nstage2_lr = 0.02")  # an edit
    outputs = kernel(validation.source + "\nprint('validated', cfg.stage2_lr)")
    assert any("validated 0.02" in o.get("text", "") for o in outputs), outputs


def test_a_mistyped_name_in_the_parameter_cells_is_still_rejected():
    history = ["", 'profile = "smoke"', '# Parameters\nprofile = "smoke"\nstage2lr = 0.1',
               "cfg = config.from_notebook(globals())"]
    with pytest.raises(config.ProfileError, match="stage2lr"):
        config.from_notebook({"In": history, "profile": "smoke", "stage2lr": 0.1})
    other_names = {"In": history[:2] + history[3:], "profile": "smoke", "spawn": [1.0]}
    assert config.from_notebook(other_names).profile == "smoke"


def error_output(*sources: str) -> dict:
    """The error output of the last of ``sources``, run as cells of a fresh notebook."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(notebook, kernel_name="python3", timeout=300, allow_errors=True).execute()
    return next(o for o in notebook.cells[-1].outputs if o["output_type"] == "error")


def test_a_profile_or_data_error_shows_as_its_message_not_a_traceback(tmp_path):
    error = error_output("from ntkbook import config", "config.load_profile('smok')")
    assert error["traceback"] == [
        f"ProfileError: {error['evalue']}"] and "did you mean 'smoke'" in error["evalue"]
    (tmp_path / "cifar-10-batches-bin").mkdir()
    error = error_output(f"import os; os.environ['NTKBOOK_DATA_DIR'] = {str(tmp_path)!r}",
                         "from ntkbook import config",
                         "cfg = config.from_notebook({'profile': 'smoke'})")
    assert len(error["traceback"]) == 1 and error["ename"] == "DataError"
    assert "cifar-10-batches-bin cannot be used: no training file" in error["traceback"][0]


def test_a_misspelled_papermill_parameter_fails_in_a_few_lines(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(str(book.ROOT / "book" / "protocol.ipynb"),
                                   str(tmp_path / "protocol.ipynb"),
                                   parameters={"stage1_epoch": 8}, kernel_name="python3",
                                   cwd=str(book.ROOT / "book"), progress_bar=False)
    assert len(error.value.traceback) <= 3
    assert "unknown parameter 'stage1_epoch' (did you mean 'stage1_epochs'?)" in \
        error.value.traceback[-1]
