OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_isolated_units',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _m = torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool)\n>>> assert tuple((int(v) for v in isolated_units(_m))) == (1, 2)\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
