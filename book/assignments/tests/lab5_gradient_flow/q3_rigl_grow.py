OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_rigl_grow',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _new = rigl_grow(torch.tensor([True, False, False]), torch.tensor([0.0, 1.0, 2.0]), 1)\n>>> assert _new.tolist() == [True, False, True]\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
