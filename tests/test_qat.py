"""QAT: fake quantization through the runtime's module, observers, and integer-exact export."""
from __future__ import annotations

import pytest
import torch
from test_trainers_support import tiny_qa_dataset, tiny_qa_model, tiny_training_args
from transformers import HfArgumentParser, default_data_collator

from fastdistilbert import quantization as Q
from fastdistilbert.modules import QuantizedLinear
from fastdistilbert.trainers.arguments import QATArguments
from fastdistilbert.trainers.callbacks import ObserverFreezeCallback
from fastdistilbert.trainers.pruning import BlockPruner
from fastdistilbert.trainers.qat import FakeQuantLinear, export_to_fast, fake_quant_linears, prepare_qat
from fastdistilbert.trainers.qat import activation_params_of as export_activation_params
from fastdistilbert.trainers.trainer import CompressionTrainer

U = 2.0**-24  # fp32 unit roundoff


def _features(n=8, seed=3):
    batch = default_data_collator(tiny_qa_dataset(n, seed=seed, labels=False))
    return batch["input_ids"], batch["attention_mask"]


def _observed_qat_model(seed=0, sparsity=0.5, **qat):
    """A pruned QAT model whose observers have seen one batch (momentum 1: range = that batch)."""
    model = tiny_qa_model(seed, dim=64, hidden_dim=128)
    pruner = BlockPruner(model)
    pruner.compute_magnitude_masks(sparsity)
    pruner.apply_masks()
    prepare_qat(model, QATArguments(observer_momentum=1.0, **qat))
    ids, mask = _features(seed=seed)
    model.train()(input_ids=ids, attention_mask=mask)
    return model.eval()


def test_prepare_qat_shares_parameters_and_keeps_state_dict_keys():
    model = tiny_qa_model()
    before = dict(model.named_parameters())
    prepare_qat(model)
    layers = fake_quant_linears(model)
    assert len(layers) == 12 and all(isinstance(m, torch.nn.Linear) for m in layers.values())
    after = dict(model.named_parameters())
    assert all(after[name] is param for name, param in before.items())
    with pytest.raises(ValueError, match="called twice"):
        prepare_qat(model)


def test_forward_is_the_shared_fake_quant_formula():
    model = _observed_qat_model()
    layer = model.distilbert.transformer.layer[0].ffn.lin1
    layer.observer_frozen.fill_(True)
    x = torch.randn(5, 64)
    scale, zero_point = Q.activation_params(layer.act_lo, layer.act_hi)
    expected = torch.nn.functional.linear(Q.fake_quantize_activation(x, scale, zero_point),
                                          Q.fake_quantize_weight(layer.weight), layer.bias)
    assert torch.equal(layer.train()(x), expected)
    # eval mode runs the exported layer's own integer arithmetic
    assert torch.equal(layer.eval()(x), export_to_fast(model).get_submodule(
        "distilbert.transformer.layer.0.ffn.lin1")(x))


def test_observer_follows_ema_until_frozen():
    layer = FakeQuantLinear(4, 4, momentum=0.25).train()
    layer(torch.tensor([[-1.0, 2.0, 0.0, 0.5]]))
    assert (layer.act_lo.item(), layer.act_hi.item()) == (-1.0, 2.0)
    layer(torch.tensor([[-3.0, 6.0, 0.0, 0.0]]))
    assert (layer.act_lo.item(), layer.act_hi.item()) == (-1.5, 3.0)
    layer.observer_frozen.fill_(True)
    layer(torch.tensor([[-30.0, 60.0, 0.0, 0.0]]))
    assert (layer.act_lo.item(), layer.act_hi.item()) == (-1.5, 3.0)
    with pytest.raises(RuntimeError, match="no activation range"):
        FakeQuantLinear(4, 4).eval()(torch.zeros(1, 4))


def test_learned_ranges_get_gradients_only_after_freeze():
    layer = FakeQuantLinear(8, 4, observer="learned").train()
    x = torch.randn(16, 8)
    layer(x).pow(2).sum().backward()
    assert layer.act_lo.grad is None and layer.act_hi.grad is None
    layer.observer_frozen.fill_(True)
    layer(x * 1.5).pow(2).sum().backward()  # values beyond the range: the clipping bound must move
    assert layer.act_hi.grad is not None and layer.act_hi.grad.abs().item() > 0


def test_observer_freeze_callback_stops_range_updates_at_the_step(tmp_path):
    model = tiny_qa_model()
    prepare_qat(model, QATArguments(observer_momentum=0.5, freeze_observers_step=3))
    layer = model.distilbert.transformer.layer[1].attention.q_lin
    seen = []

    class Record(ObserverFreezeCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append((state.global_step, layer.act_hi.item(), bool(layer.observer_frozen)))

    trainer = CompressionTrainer(model=model, args=tiny_training_args(tmp_path, max_steps=6),
                                 train_dataset=tiny_qa_dataset(),
                                 callbacks=[ObserverFreezeCallback(QATArguments(freeze_observers_step=3)), Record(QATArguments())])
    trainer.train()
    assert [frozen for _, _, frozen in seen] == [False, False, True, True, True, True]
    his = [hi for _, hi, _ in seen]
    assert len(set(his[:3])) == 3 and len(set(his[2:])) == 1


def test_export_is_integer_exact():
    model = _observed_qat_model()
    fast = export_to_fast(model)
    quantized = {n: m for n, m in fast.named_modules() if isinstance(m, QuantizedLinear)}
    assert quantized.keys() == fake_quant_linears(model).keys()
    for name, layer in fake_quant_linears(model).items():
        exported = quantized[name]
        assert exported.weight.dtype == torch.int8 and exported.input_zero_point.dtype == torch.int32
        # the fp32 weight the QAT forward multiplies with is exactly int8 code x exported scale
        assert torch.equal(Q.fake_quantize_weight(layer.weight), Q.dequantize_weight(exported.weight, exported.weight_scale))
        codes, scale = Q.quantize_weight(layer.weight.detach())
        assert torch.equal(exported.weight, codes) and torch.equal(exported.weight_scale, scale)
        act_scale, act_zero_point = layer.activation_qparams()
        assert torch.equal(exported.input_scale, act_scale) and torch.equal(exported.input_zero_point, act_zero_point)
        assert torch.equal(exported.bias, layer.bias.detach())
        # pruned blocks stay exactly zero in the int8 weight (tiny unpruned weights may round to 0 too)
        pruned = layer.weight.detach() == 0
        assert pruned.float().mean() >= 0.5 and torch.all(exported.weight[pruned] == 0)


def _capture_linear_inputs(model, ids, mask):
    """The input each FakeQuantLinear sees in one forward of the QAT model."""
    inputs, hooks = {}, []
    for name, module in fake_quant_linears(model).items():
        hooks.append(module.register_forward_hook(lambda m, a, out, name=name: inputs.__setitem__(name, a[0])))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for hook in hooks:
        hook.remove()
    return inputs


def test_each_layer_matches_the_int8_layer_within_the_fp32_summation_bound():
    """Same input, same codes: in training the QAT layer sums the products (q_k - z) s * w_k s_w in fp32 (each product of
    two once-rounded factors, summed in any order), the INT8 layer sums them exactly in integers and scales
    once. Standard error analysis (Higham, ch. 3) bounds the difference by
        gamma_{K+5} * s * s_w * sum_k |q_k - z| |w_k|  +  2u (|y| + |b|),    gamma_n = n u / (1 - n u),
    K = in_features: K+2 roundings in the fp32 dot product and factors, 3 in the integer path's epilogue.
    The INT8 side is QuantizedLinear's reference forward; the C++ kernels are tested bit-identical to it."""
    model = _observed_qat_model(seed=1)
    fast = export_to_fast(model)
    ids, mask = _features(seed=1)
    inputs = _capture_linear_inputs(model, ids, mask)
    exported = dict(fast.named_modules())
    for name, layer in fake_quant_linears(model).items():
        x = inputs[name]
        layer.observer_frozen.fill_(True)
        with torch.no_grad():
            y_qat, y_int8 = layer.train()(x), exported[name](x)  # train mode: the fp32 fake-quant GEMM
        scale, zero_point = layer.activation_qparams()
        codes = Q.quantize_activation(x, scale, zero_point).double() - float(zero_point)
        w_codes = exported[name].weight.double()
        magnitude = (codes.abs() @ w_codes.abs().t()) * (float(scale) * exported[name].weight_scale.double())
        K = layer.in_features
        gamma = (K + 5) * U / (1 - (K + 5) * U)
        bound = gamma * magnitude + 2 * U * (y_int8.double().abs() + layer.bias.double().abs())
        assert torch.all((y_qat.double() - y_int8.double()).abs() <= bound), name


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_logits_match_the_qat_model(seed):
    model = _observed_qat_model(seed=seed)
    fast = export_to_fast(model)
    ids, mask = _features(seed=seed)
    qat = _assert_logits_match(model, fast, ids, mask)
    fast.distilbert.transformer.layer[0].attention.q_lin.input_scale.mul_(255 / 256)  # any export error shows
    fast.distilbert.use_int8_kernels = False
    with torch.no_grad():
        assert not torch.equal(fast(input_ids=ids, attention_mask=mask).start_logits, qat.start_logits)


def _assert_logits_match(model, fast, ids, mask):
    """Tolerances of the exported model against the QAT model (in eval mode), returns the QAT logits.

    Reference path (`use_int8_kernels = False`): EXACT equality. Both models run the same HF modules for
    everything but the encoder Linears, and the QAT model's eval forward runs the runtime's own QuantizedLinear on
    the same input with the exported integers, so every operation and every rounding is the same.

    Kernel path: the C++ encoder computes LayerNorm, softmax, GELU and the attention products with its own fp32
    code, so values differ in the last bits; where such a difference straddles a rounding boundary of the next
    quantizer, a u8 code moves by one step, and that step feeds later quantizers, which can flip in turn. The
    kernel logits are therefore a second rounding of the same fp32 model, not a bit-exact copy: at worst (after
    many layers the flips decorrelate the two roundings) they differ from the QAT logits like two independent
    roundings do, i.e. by up to sqrt(2) x the quantization noise |logits_qat - logits_fp32|. We allow exactly
    that (plus 4 ulp of the logits). Measured: ~1e-8 on these 2-layer models, ~0.45 x the noise on the 6-layer
    MiniLM encoder at 80% sparsity."""
    model.eval()
    with torch.no_grad():
        qat = model(input_ids=ids, attention_mask=mask)
        fp32 = _float_logits(model, ids, mask)
        kernels = fast(input_ids=ids, attention_mask=mask)
        fast.distilbert.use_int8_kernels = False
        reference = fast(input_ids=ids, attention_mask=mask)
        fast.distilbert.use_int8_kernels = True
    real = mask.bool()  # logits of padding positions carry no answer (the kernel path zeroes them)
    for key in ("start_logits", "end_logits"):
        assert torch.equal(qat[key], reference[key]), key
        noise = (qat[key] - fp32[key])[real].abs().max()
        assert noise > 0
        tolerance = 2**0.5 * noise + 4 * U * qat[key][real].abs().max()
        assert (qat[key] - kernels[key])[real].abs().max() <= tolerance, key
    return qat


def _float_logits(model, ids, mask):
    """Logits of the QAT model with every FakeQuantLinear computing a plain fp32 Linear."""
    originals = {}
    for layer in fake_quant_linears(model).values():
        originals[layer] = layer.forward
        layer.forward = lambda x, layer=layer: torch.nn.functional.linear(x, layer.weight, layer.bias)
    try:
        out = model(input_ids=ids, attention_mask=mask)
    finally:
        for layer, forward in originals.items():
            layer.forward = forward
    return {"start_logits": out.start_logits, "end_logits": out.end_logits}


def test_export_without_observed_ranges_is_a_clear_error():
    model = prepare_qat(tiny_qa_model())
    with pytest.raises(RuntimeError, match="no activation range"):
        export_to_fast(model)
    with pytest.raises(ValueError, match="prepare_qat"):
        export_to_fast(tiny_qa_model())


def test_qat_arguments_parse_and_validate():
    (args,) = HfArgumentParser(QATArguments).parse_args_into_dataclasses(
        ["--activation_observer", "learned", "--freeze_observers_step", "10"])
    assert args.activation_observer == "learned" and args.freeze_observers_step == 10
    with pytest.raises(ValueError, match="needs freeze_observers_step"):
        QATArguments(activation_observer="learned")


def test_qat_resumes_from_a_checkpoint_with_its_observed_ranges(tmp_path):
    def run(output_dir, resume=None):
        model = prepare_qat(tiny_qa_model(), QATArguments(observer_momentum=0.5))
        qat = QATArguments(freeze_observers_step=4)
        trainer = CompressionTrainer(model=model, args=tiny_training_args(output_dir, max_steps=6, save_strategy="steps",
                                                                          save_steps=3),
                                     train_dataset=tiny_qa_dataset(), callbacks=[ObserverFreezeCallback(qat)])
        trainer.train(resume_from_checkpoint=resume)
        return {n: (m.act_lo.item(), m.act_hi.item(), bool(m.observer_frozen)) for n, m in fake_quant_linears(model).items()}

    full = run(tmp_path / "full")
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed == full and all(frozen for _, _, frozen in full.values())


def test_q_k_v_share_one_input_range_as_the_fused_kernel_needs():
    model = prepare_qat(tiny_qa_model(), QATArguments(observer_momentum=0.5))
    attention = model.distilbert.transformer.layer[0].attention
    assert attention.k_lin.range_owner is attention.q_lin and attention.v_lin.range_owner is attention.q_lin
    assert attention.out_lin.range_owner is attention.out_lin
    ids, mask = _features()
    model.train()(input_ids=ids, attention_mask=mask)
    attention.k_lin(torch.full((2, 32), 50.0))  # a follower never observes its own input
    for follower in (attention.k_lin, attention.v_lin):
        assert (follower.act_lo.item(), follower.act_hi.item()) == (attention.q_lin.act_lo.item(), attention.q_lin.act_hi.item())


def test_learned_ranges_train_and_export_through_the_fused_kernels(tmp_path):
    model = tiny_qa_model()
    qat = QATArguments(activation_observer="learned", freeze_observers_step=2)
    prepare_qat(model, qat)
    attention = model.distilbert.transformer.layer[1].attention
    assert isinstance(attention.q_lin.act_hi, torch.nn.Parameter) and not isinstance(attention.v_lin.act_hi, torch.nn.Parameter)
    seen = []

    class Record(ObserverFreezeCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(attention.q_lin.act_hi.item())

    trainer = CompressionTrainer(model=model, args=tiny_training_args(tmp_path, max_steps=5, learning_rate=0.05),
                                 train_dataset=tiny_qa_dataset(), callbacks=[ObserverFreezeCallback(qat), Record(qat)])
    trainer.train()
    assert len(set(seen[1:])) > 1  # the frozen range kept moving: by gradient descent now
    params = {n: p for n, p in export_activation_params(model).items()}
    for layer in range(2):
        prefix = f"distilbert.transformer.layer.{layer}.attention."
        assert params[prefix + "q_lin"] == params[prefix + "k_lin"] == params[prefix + "v_lin"]
    ids, mask = _features()
    _assert_logits_match(model, export_to_fast(model), ids, mask)


def test_calibration_sets_ranges_with_dropout_off_and_restores_the_mode():
    from fastdistilbert.trainers.qat import calibrate_observers

    model = prepare_qat(tiny_qa_model(dropout=0.5), QATArguments(observer_momentum=1.0))
    model.train()
    batches = [default_data_collator(tiny_qa_dataset(4, seed=s)) for s in range(3)]
    dropout_modes = []
    model.distilbert.transformer.layer[0].ffn.dropout.register_forward_hook(
        lambda m, a, out: dropout_modes.append(m.training))
    assert calibrate_observers(model, batches, max_batches=2) == 2
    assert dropout_modes == [False, False] and model.training
    layer = model.distilbert.transformer.layer[0].attention.q_lin
    ids = batches[1]["input_ids"]
    embeddings = model.eval().distilbert.embeddings(ids).detach()  # q_lin of layer 0 reads the embeddings
    real = embeddings[batches[1]["attention_mask"].bool()]  # padding positions are not observed
    assert (layer.act_lo.item(), layer.act_hi.item()) == (real.min().item(), real.max().item())
    assert (embeddings.min().item(), embeddings.max().item()) != (real.min().item(), real.max().item())
    export_to_fast(model)
