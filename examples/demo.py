# The quick-start demo: numpy, pandas and a matplotlib plot, inside hybox's wasm sandbox.
import numpy as np
import matplotlib.pyplot as plt

rng = np.random.default_rng(7)
samples = rng.normal(loc=10, scale=2, size=10_000)
print(f"numpy {np.__version__}: mean={samples.mean():.3f} std={samples.std():.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(samples, bins=60, color="#4c72b0")
ax.set_title("10,000 samples of N(10, 2), drawn in a wasm sandbox")
fig.savefig("/workspace/plot.png", dpi=100)  # into the sandbox's workspace
print("saved /workspace/plot.png")

{"mean": round(float(samples.mean()), 3), "p99": round(float(np.percentile(samples, 99)), 3)}
