OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q1_exact_count_mask',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> m = exact_count_mask((20, 30), 0.1, seed=0)\n>>> assert tuple(m.shape) == (20, 30) and m.dtype == torch.bool and (int(m.sum()) == 60)\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
