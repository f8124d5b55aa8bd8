"""The rvqstream codec model in torch: frame encoder -> residual VQ -> code-conditioned causal LM.

Shapes: B messages, T tokens per message (<= context), F tokens per frame, N RVQ stages of K codes
of dimension D, model width d. Token t's prediction (input position t-1) is conditioned on the
quantized latent of the frame that holds token t, through a vector added to the input embedding;
with zero stages the conditioning vector is zero and the decoder is a plain language model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 4096
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    context: int = 256          # input positions: start symbol + up to context-1 tokens
    frame: int = 16             # max tokens per frame (F)
    enc_layers: int = 2
    latent_dim: int = 128       # D
    stages: int = 8             # N
    codes: int = 1024           # K
    cond_hidden: int = 512
    ema_decay: float = 0.98
    commitment: float = 0.25
    zero_stage_prob: float = 0.25   # quantizer dropout: P(frame uses 0 stages)
    frame_token_weight: float = 0.3  # auxiliary loss: the conditioning vector alone predicts its token

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Config from a checkpoint's dict; fields of training-only losses that no longer exist
        (``bow_weight``) are dropped."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Block(nn.Module):
    """Pre-LN transformer block; ``causal`` selects masked self-attention."""

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        self.h, self.causal = cfg.n_heads, causal
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def attend(self, x, past_k=None, past_v=None, key_mask=None):
        """x [B,T,d] -> (out [B,T,d], k [B,H,T',dh], v [B,H,T',dh]) with T' = past + T."""
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(B, T, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        if key_mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        elif past_k is not None:
            y = F.scaled_dot_product_attention(q, k, v)  # single query step: sees every key
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        y = y.transpose(1, 2).reshape(B, T, d)
        return self.proj(y), k, v

    def forward(self, x, key_mask=None):
        a, _, _ = self.attend(x, key_mask=key_mask)
        x = x + a
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x)), approximate="tanh"))


class ResidualVQ(nn.Module):
    """N stages of K EMA codebooks in D dims, k-means initialized, dead codes replaced."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        N, K, D = cfg.stages, cfg.codes, cfg.latent_dim
        self.register_buffer("codebooks", torch.randn(N, K, D) * 0.1)
        self.register_buffer("ema_count", torch.ones(N, K))
        self.register_buffer("ema_sum", self.codebooks.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self.fresh_count = 0.25   # EMA count given to a new code (about uniform usage per batch)

    @torch.no_grad()
    def _kmeans_init(self, z):
        r = z
        for s in range(self.cfg.stages):
            # with fewer latents than codes, codes start at latents plus noise (so that the next
            # stage's residuals are not all zero); dead-code replacement spreads them later
            cb = r[torch.randint(len(r), (self.cfg.codes,), device=r.device)].clone()
            cb += 0.3 * r.std() * torch.randn_like(cb)
            for _ in range(8):
                idx = torch.cdist(r, cb).argmin(-1)
                cnt = torch.bincount(idx, minlength=self.cfg.codes).float()
                sums = torch.zeros_like(cb).index_add_(0, idx, r)
                filled = cnt > 0
                cb[filled] = sums[filled] / cnt[filled, None]
            self.codebooks[s] = cb
            self.ema_sum[s] = cb * self.fresh_count
            self.ema_count[s] = self.fresh_count
            r = r - cb[torch.cdist(r, cb).argmin(-1)]
        self.initialized.fill_(True)

    def forward(self, z):
        """z [M,D] -> (quantized prefix sums [N+1,M,D] (index n = first n stages), codes [M,N],
        commitment loss, per-stage code usage perplexity [N])."""
        if self.training and not bool(self.initialized):
            self._kmeans_init(z.detach().float())
        r = z
        outs = [torch.zeros_like(z)]
        codes, commit, perplexity = [], z.new_zeros(()), []
        for s in range(self.cfg.stages):
            cb = self.codebooks[s]
            idx = torch.cdist(r.detach().float(), cb).argmin(-1)
            e = cb[idx].to(z.dtype)
            commit = commit + F.mse_loss(r, e.detach())
            if self.training:
                self._ema_update(s, r.detach().float(), idx)
            p = torch.bincount(idx, minlength=self.cfg.codes).float() / len(idx)
            perplexity.append(torch.exp(-(p * torch.log(p + 1e-10)).sum()))
            r = r - e
            outs.append(outs[-1] + e)
            codes.append(idx)
        q = torch.stack(outs)                       # [N+1, M, D]
        q = z.unsqueeze(0) + (q - z.unsqueeze(0)).detach()   # straight-through
        q[0] = 0
        return q, torch.stack(codes, -1), commit * self.cfg.commitment, torch.stack(perplexity)

    @torch.no_grad()
    def _ema_update(self, s, r, idx):
        decay, K = self.cfg.ema_decay, self.cfg.codes
        onehot_count = torch.bincount(idx, minlength=K).float()
        sums = torch.zeros(K, r.shape[1], device=r.device).index_add_(0, idx, r)
        self.ema_count[s].mul_(decay).add_(onehot_count, alpha=1 - decay)
        self.ema_sum[s].mul_(decay).add_(sums, alpha=1 - decay)
        n = self.ema_count[s].sum()
        count = (self.ema_count[s] + 1e-5) / (n + K * 1e-5) * n
        self.codebooks[s] = self.ema_sum[s] / count[:, None]
        dead = self.ema_count[s] < self.fresh_count / 4
        if dead.any():  # dead-code replacement: move unused codes onto random current residuals
            nd = int(dead.sum())
            new = r[torch.randint(len(r), (nd,), device=r.device)]
            self.codebooks[s][dead] = new
            self.ema_sum[s][dead] = new * self.fresh_count
            self.ema_count[s][dead] = self.fresh_count


class FrameEncoder(nn.Module):
    """Bidirectional transformer over one frame's tokens -> latent [D] (mean-pooled)."""

    def __init__(self, cfg: ModelConfig, tok_emb: nn.Embedding):
        super().__init__()
        self.tok_emb = tok_emb
        self.pos = nn.Embedding(cfg.frame, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg.enc_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.latent_dim)
        self.norm = nn.LayerNorm(cfg.latent_dim, elementwise_affine=False)  # unit-scale latents

    def forward(self, frames, lengths):
        """frames [M,F] int64 (padded), lengths [M] -> latent [M,D]."""
        Fr = frames.shape[1]
        valid = torch.arange(Fr, device=frames.device)[None, :] < lengths[:, None]   # [M,F]
        x = self.tok_emb(frames) + self.pos.weight[:Fr][None]
        mask = valid[:, None, None, :]    # keys
        for b in self.blocks:
            x = b(x, key_mask=mask)
        x = self.ln(x) * valid[..., None]
        return self.norm(self.out(x.sum(1) / lengths[:, None].clamp(min=1)))


class CodeConditioner(nn.Module):
    """Quantized latent z [.,D] and position-in-frame j -> vector added to the LM input [.,d]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.latent_dim, cfg.cond_hidden)
        self.pos = nn.Embedding(cfg.frame, cfg.cond_hidden)
        self.out = nn.Linear(cfg.cond_hidden, cfg.d_model)

    def forward(self, z, j, has_z):
        """z [...,D], j [...] int64, has_z [...] float (0 or 1) -> [...,d]."""
        return self.out(F.gelu(self.inp(z) + self.pos(j), approximate="tanh")) * has_z[..., None]


class CodecModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, causal=True) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.encoder = FrameEncoder(cfg, self.tok_emb)
        self.rvq = ResidualVQ(cfg)
        self.cond = CodeConditioner(cfg)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def head(self, h):
        return self.ln_f(h) @ self.tok_emb.weight.T

    def decode(self, inputs, cond):
        """inputs [B,T] token ids (start symbol first), cond [B,T,d] -> logits [B,T,V]."""
        T = inputs.shape[1]
        x = self.tok_emb(inputs) + self.pos_emb.weight[:T][None] + cond
        for b in self.blocks:
            x = b(x)
        return self.head(x)

    def forward(self, batch, stage_counts=None):
        """One training step's losses. ``batch`` holds (see data.py):
        inputs/targets [B,T], target_mask [B,T], frames [M,F], frame_len [M],
        frame_of [B,T] (frame index in 0..M-1 of each target token, -1 for padding), pos_in_frame [B,T].
        Returns dict of scalar tensors: loss, ce (nats/token), commit, and perplexity [N]."""
        cfg = self.cfg
        z = self.encoder(batch["frames"], batch["frame_len"])
        q, _, commit, perplexity = self.rvq(z)            # q [N+1, M, D]
        M = z.shape[0]
        if stage_counts is None:  # quantizer dropout: every prefix of stages, zero included
            n = torch.randint(1, cfg.stages + 1, (M,), device=z.device)
            n = torch.where(torch.rand(M, device=z.device) < cfg.zero_stage_prob, torch.zeros_like(n), n)
        else:
            n = stage_counts
        zq = q[n, torch.arange(M, device=z.device)]        # [M, D]
        fo = batch["frame_of"].clamp(min=0)
        has_z = ((n[fo] > 0) & (batch["frame_of"] >= 0)).float()
        cond = self.cond(zq[fo], batch["pos_in_frame"], has_z)
        logits = self.decode(batch["inputs"], cond)
        ce = F.cross_entropy(logits.float().flatten(0, 1), batch["targets"].flatten(), reduction="none")
        m = batch["target_mask"].flatten().float()
        ce = (ce * m).sum() / m.sum()
        ft = self._frame_token_loss(zq, batch["frames"], batch["frame_len"], n > 0)
        return {"loss": ce + commit + cfg.frame_token_weight * ft, "ce": ce, "commit": commit,
                "frame_tokens": ft, "perplexity": perplexity}

    def _frame_token_loss(self, zq, frames, lengths, used):
        """Mean NLL of each frame token under the LM's output head applied to the conditioning
        vector of its position alone (no text context): the quantized latent must say which token
        sits where, in the form the decoder reads (the semantic tier decodes from it)."""
        M, Fr = frames.shape
        j = torch.arange(Fr, device=frames.device)
        valid = (j[None] < lengths[:, None]) & used[:, None]                  # [M,F]
        c = self.cond(zq[:, None, :].expand(M, Fr, zq.shape[-1]), j[None].expand(M, Fr), valid.float())
        logp = F.log_softmax(self.head(c[valid]).float(), -1)               # [m,V]
        nll = -logp.gather(1, frames[valid][:, None])
        return nll.sum() / valid.sum().clamp(min=1)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

