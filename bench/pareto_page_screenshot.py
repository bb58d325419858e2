"""The README's screenshot: `hwnas serve` on a fresh data folder, the demo job submitted with `nas.client`,
then its Pareto page in headless Chromium (Debian's chromium + chromedriver), saved as PNG.

    python bench/pareto_page_screenshot.py [--spec nas/examples/demo.yaml] [--out bench/results/pareto-page.png]

Prints the job's wall time (submit to completed) and its front.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "nas" / "examples" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pareto-page.png")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    from nas.client import HwnasClient

    folder = Path(tempfile.mkdtemp(prefix="hwnas-screenshot-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HWNAS_DATA_DIR": str(folder / "data"), "HWNAS_PORT": str(port),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    server = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token = None
        while token is None:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("hwnas serve stopped before printing its token")
            if match := re.match(r"first admin token .*: (\S+)$", line.strip()):
                token = match.group(1)
        client = HwnasClient(f"http://127.0.0.1:{port}", token)
        for _ in range(100):
            try:
                client.jobs()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.2)
        started = time.perf_counter()
        job = client.submit(args.spec)
        done = client.wait(job["job_id"])
        print(f"job {done['job_id']} {done['state']} in {time.perf_counter() - started:.0f} s: {done['message']}")
        print(client.front(job["job_id"]).to_string())

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1500",
                     f"--user-data-dir={folder / 'chromium'}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path="/usr/bin/chromedriver"))
        try:
            driver.get(f"http://127.0.0.1:{port}/#token={token}")
            time.sleep(1)
            driver.get(f"http://127.0.0.1:{port}/#/jobs/{job['job_id']}")
            for _ in range(100):
                if driver.execute_script("return !!window.hwnas.charts.pareto"):
                    break
                time.sleep(0.2)
            time.sleep(1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
            print(f"screenshot: {args.out}")
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
