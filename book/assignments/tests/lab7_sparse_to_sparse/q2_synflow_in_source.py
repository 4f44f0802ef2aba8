OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_synflow_in_source',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _model = MLP(6, (8,), 3)\n'
                                               '>>> _src = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in _model.named_modules() if isinstance(m, nn.Linear)}\n'
                                               '>>> _s = synflow_in_source(_model, _src, (6,))\n'
                                               '>>> assert set(_s) == set(_src) and all((float(v.min()) >= 0 for v in _s.values()))\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
