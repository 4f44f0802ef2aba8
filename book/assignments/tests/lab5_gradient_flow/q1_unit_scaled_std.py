OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_unit_scaled_std',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> _s = unit_scaled_std(torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool))\n'
                                               '>>> assert torch.allclose(torch.as_tensor(_s, dtype=torch.float64), torch.tensor([1.0, math.sqrt(2.0)], dtype=torch.float64))\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
