OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_snip_in_source',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _model = MLP(6, (8,), 3)\n'
                                               '>>> _src = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in _model.named_modules() if isinstance(m, nn.Linear)}\n'
                                               '>>> _s = snip_in_source(_model, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), _src)\n'
                                               '>>> assert set(_s) == set(_src) and all((v.shape == _src[k].shape for k, v in _s.items()))\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
