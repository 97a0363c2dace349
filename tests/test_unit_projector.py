"""Key projector: deterministic for a seed, exact safetensors round trip, training brings pairs together."""
import torch

from fastmem.memory.projector import KeyProjector, ProjectorConfig, train_projector

D, N = 24, 16


def synthetic_keys(seed: int = 0):
    """Write and read keys share 4 content dimensions; the other 20 are large independent nuisance."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(N, 4, generator=g)
    write = torch.cat([content, 3 * torch.randn(N, D - 4, generator=g)], dim=1)
    read = torch.cat([content + 0.05 * torch.randn(N, 4, generator=g), 3 * torch.randn(N, D - 4, generator=g)], 1)
    negatives = torch.cat([torch.randn(8, 4, generator=g), 3 * torch.randn(8, D - 4, generator=g)], 1)
    return write, read, negatives


def config(steps=60, seed=0):
    return ProjectorConfig(D, layer=2, rank=8, steps=steps, seed=seed)


def test_projector_is_deterministic_for_a_seed():
    w, r, n = synthetic_keys()
    a = train_projector(w, r, n, config(), show_progress=False)
    b = train_projector(w, r, n, config(), show_progress=False)
    for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(ta, tb)
    assert a.identity == b.identity
    c = train_projector(w, r, n, config(seed=1), show_progress=False)
    assert not torch.equal(a.linear.weight, c.linear.weight)
    assert not any(p.requires_grad for p in a.parameters())


def test_projector_save_load_round_trip(tmp_path):
    w, r, n = synthetic_keys()
    proj = train_projector(w, r, n, config(steps=10), show_progress=False)
    path = tmp_path / "projector.safetensors"
    proj.save(path)
    back = KeyProjector.load(path)
    assert back.config == proj.config
    for (ka, ta), (kb, tb) in zip(proj.state_dict().items(), back.state_dict().items()):
        assert ka == kb and torch.equal(ta, tb)
    assert back.identity == proj.identity
    assert torch.equal(back(r), proj(r))


def test_training_makes_positive_pairs_closer():
    w, r, n = synthetic_keys()
    untrained = train_projector(w, r, n, config(steps=0), show_progress=False)  # same init, no step
    trained = train_projector(w, r, n, config(steps=150), show_progress=False)

    def pair_cos(p):
        return (p(w) * p(r)).sum(-1)

    def top1(p):
        return ((p(r) @ p(w).T).argmax(1) == torch.arange(N)).float().mean()

    assert pair_cos(trained).mean() > pair_cos(untrained).mean() + 0.2
    assert top1(trained) > top1(untrained)
    # negatives stay below the positives on average
    assert (trained(n) @ trained(w).T).max(1).values.mean() < pair_cos(trained).mean()
