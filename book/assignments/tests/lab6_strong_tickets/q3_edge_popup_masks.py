OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_edge_popup_masks',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': ">>> _m = edge_popup_masks({'a': torch.tensor([0.1, 0.9, 0.5, 0.2])}, 0.5)\n>>> assert _m['a'].tolist() == [False, True, True, False]\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
