OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_gradient_norm',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _model = MLP(8, (16,), 3)\n'
                                               '>>> _x, _y = (torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1]))\n'
                                               '>>> assert masked_gradient_norm(_model, _x, _y) > 0\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
