"""Training curves as PNGs beside the model card."""

import os


def plot_curves(history: list[dict], out_dir: str, series: dict[str, list[str]]) -> list[str]:
    """One PNG per entry of `series` ({file name: [history keys]}), step on the x axis."""
    import matplotlib  # lazy: optional dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: optional dependency

    paths = []
    for file_name, keys in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in keys:
            points = [(row["step"], row[key]) for row in history if key in row]
            if points:
                ax.plot(*zip(*points, strict=True), label=key, marker="." if len(points) < 30 else None)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, file_name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
