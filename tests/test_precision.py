"""The Trainer's precision choice: explicit settings win; 'auto' follows the hardware."""
import pytest
import tf_keras as keras

from models import architectures
from models import precision


def _build(size):
  return architectures.build('sknet', 3, image_size=size)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n')
  assert precision.cpu_flags(str(cpuinfo)) == {'fpu', 'avx2', 'avx512_bf16'}
  assert precision.cpu_model(str(cpuinfo)) == 'Some CPU'
  assert precision.cpu_flags(str(tmp_path / 'missing')) == frozenset()


@pytest.mark.parametrize('setting', ['float32', 'mixed_bfloat16', 'mixed_float16'])
def test_an_explicit_setting_is_used_as_given(setting):
  policy, reason = precision.choose(setting, _build, 32, 4, flags=frozenset({'avx512_bf16'}))
  assert policy == setting and 'configuration' in reason


def test_auto_without_bfloat16_instructions_is_float32_without_measuring(monkeypatch):
  monkeypatch.setattr(precision, 'measure_bfloat16_speedup',
                      lambda *args: pytest.fail('measured on a CPU without bfloat16'))
  flags = frozenset({'avx2', 'avx512f'})
  assert precision.choose('auto', _build, 32, 4, flags=flags)[0] == 'float32'


@pytest.mark.parametrize('speedup, expected', [(1.9, 'mixed_bfloat16'), (1.0, 'float32'),
                                               (0.3, 'float32')])
def test_auto_with_bfloat16_instructions_keeps_it_only_when_measured_faster(
    monkeypatch, tmp_path, speedup, expected):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  monkeypatch.setattr(precision, 'measure_bfloat16_speedup', lambda *args: speedup)
  for flag in precision.BF16_FLAGS:
    policy, reason = precision.choose('auto', _build, 32, 4, flags=frozenset({flag}),
                                      model_name=flag)
    assert policy == expected and f'{speedup:.2f}x' in reason


def test_the_check_is_measured_once_per_machine_and_model(monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  measured = []
  monkeypatch.setattr(precision, 'measure_bfloat16_speedup',
                      lambda *args: measured.append(1) or 1.6)
  flags = frozenset({'avx512_bf16'})
  first = precision.choose('auto', _build, 32, 4, flags=flags, model_name='sknet')
  second = precision.choose('auto', _build, 32, 4, flags=flags, model_name='sknet')
  precision.choose('auto', _build, 32, 4, flags=flags, model_name='skresnet')
  assert len(measured) == 2  # sknet once, skresnet once
  assert first[0] == second[0] == 'mixed_bfloat16' and '(cached)' in second[1]


@pytest.mark.slow
def test_the_real_check_times_both_precisions():
  # A small model at the check's own size: a positive, finite ratio.
  speedup = precision.measure_bfloat16_speedup(
      lambda size: architectures.build('sknet', 3, size), image_size=32, batch_size=8)
  assert 0.05 < speedup < 20


def test_unknown_setting_is_refused():
  with pytest.raises(ValueError, match='float64'):
    precision.choose('float64', _build, 32, 4)


def test_mixed_models_compute_logits_in_float32():
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    model = _build(32)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert model.get_layer('conv1_1').compute_dtype == 'bfloat16'
  assert model.get_layer('fc_2').compute_dtype == 'float32'
  assert model.output.dtype == 'float32'
