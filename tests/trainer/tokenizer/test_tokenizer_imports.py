import subprocess
import sys


def test_package_import_pulls_in_neither_torch_nor_pydantic():
    code = "import sys, llm_platform.trainer.tokenizer; print(sorted({'torch', 'pydantic'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
