# frozen_string_literal: true

require_relative 'test_helper'
require 'rack/mock'

# The Rack app called directly (Rack::MockRequest); the backends are real stub servers.
class FrontendTest < Minitest::Test
  include ServerHelpers

  def setup
    @stubs = []
    @tmp = Dir.mktmpdir('frontend-test')
  end

  def teardown
    @stubs.each(&:stop)
    FileUtils.remove_entry(@tmp)
  end

  def stub(**kwargs, &answer)
    StubBackend.new(**kwargs, &answer).tap { |s| @stubs << s }
  end

  def app(env)
    Frontend::App.new(config(env))
  end

  def request(app, path, env = {})
    Rack::MockRequest.new(app).get(path, env)
  end

  def json(app, path = '/json', env = {})
    JSON.parse(request(app, path, env).body)
  end

  def node_answer(version = '1', message = 'Hello from Node', service: 'nodejs')
    ->(_req) { { service: service, version: version, message: message, pod: 'node-pod', zone: 'az-1' } }
  end

  # A weights directory as the frontend pod mounts it: `<virtual service>.json` per entry of
  # data ({vs => {target => weight}}, or {vs => JSON text}).
  def weights_dir(data)
    dir = File.join(@tmp, 'weights')
    FileUtils.mkdir_p(dir)
    data.each do |service, targets|
      File.write(File.join(dir, "#{service}.json"), targets.is_a?(String) ? targets : JSON.generate(targets))
    end
    dir
  end

  def test_page_shows_both_backends_with_answer_and_latency
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1', message: 'Hello from Crystal', pod: 'c-pod', zone: 'az-2' } }
    res = request(app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url), '/')
    assert_equal 200, res.status
    assert_match %r{text/html}, res.content_type
    assert_equal 'no-store', res.headers['Cache-Control']
    %w[Hello\ from\ Node node-pod az-1 Hello\ from\ Crystal c-pod az-2].each do |text|
      assert_includes res.body, text
    end
    assert_match(/<section id="nodejs"><h2>nodejs <span class="ok">ok<\/span><\/h2>\n<p>Answered by nodejs version 1 in [\d.]+ ms\./,
                 res.body)
    assert_match(%r{<tr><th>latency</th><td>[\d.]+ ms</td></tr>}, res.body)
    refute_includes res.body, 'unavailable'
    refute_includes res.body, 'class="down"'
  end

  def test_json_reports_both_backends
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1', message: 'c', pod: 'c', zone: 'z' } }
    data = json(app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url))
    assert_equal true, data['backends']['nodejs']['ok']
    assert_equal 200, data['backends']['nodejs']['status']
    assert_equal 'nodejs', data['backends']['nodejs']['body']['service']
    assert_equal 'crystal', data['backends']['crystal']['body']['service']
    assert_kind_of Numeric, data['backends']['crystal']['elapsed_ms']
    assert_equal({ '1' => 1 }, data['nodejs_versions'])
    assert_equal 100, data['window']
    assert_equal 1, data['samples']
    assert_equal %w[backends canary frontend nodejs_versions nodejs_versions_percent samples server split timeout_ms weights window],
                 data.keys.sort
    assert_equal({}, data['canary']) # no canary/ folder: nothing to show
  end

  def test_escapes_backend_content
    node = stub(&node_answer('1', '<script>alert("x")</script>', service: '<b>nodejs</b>'))
    body = request(app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url), '/').body
    refute_includes body, '<script>'
    refute_includes body, '<b>nodejs'
    assert_includes body, '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    assert_includes body, '&lt;b&gt;nodejs&lt;/b&gt;'
  end

  def test_trace_headers_are_propagated
    node = stub(&node_answer)
    crystal = stub { { service: 'crystal', version: '1' } }
    amzn = 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1'
    tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    request(app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => crystal.url), '/',
            'HTTP_X_AMZN_TRACE_ID' => amzn, 'HTTP_TRACEPARENT' => tp, 'HTTP_TRACESTATE' => 'k=v')
    [node, crystal].each do |backend|
      seen = backend.requests.pop
      assert_equal amzn, seen['x-amzn-trace-id']
      assert_equal tp, seen['traceparent']
      assert_equal 'k=v', seen['tracestate']
    end
  end

  def test_unavailable_backend_still_renders
    crystal = stub { { service: 'crystal', version: '1', message: 'up' } }
    frontend = app('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => crystal.url)
    res = request(frontend, '/')
    assert_equal 200, res.status
    assert_match(/nodejs <span class="down">unavailable/, res.body)
    assert_match(/ECONNREFUSED|refused/i, res.body)
    data = json(frontend)
    assert_equal false, data['backends']['nodejs']['ok']
    assert_match(/refused/i, data['backends']['nodejs']['error'])
    assert_equal true, data['backends']['crystal']['ok']
    assert_equal({}, data['nodejs_versions'])
    assert_equal 0, data['split']['nodejs']['samples']
  end

  def test_non_200_backend_is_unavailable
    frontend = app('NODEJS_URL' => "#{stub.url}/missing", 'CRYSTAL_URL' => dead_url)
    node = json(frontend)['backends']['nodejs']
    assert_equal false, node['ok']
    assert_equal 404, node['status']
    assert_equal 'HTTP 404', node['error']
  end

  def test_timeout_is_honoured
    slow = stub(delay: 1.5)
    fast = stub(&node_answer)
    frontend = app('NODEJS_URL' => fast.url, 'CRYSTAL_URL' => slow.url, 'BACKEND_TIMEOUT_MS' => '200')
    res, elapsed = timed { request(frontend, '/json') }
    assert_operator elapsed, :<, 0.7
    data = JSON.parse(res.body)
    assert_equal false, data['backends']['crystal']['ok']
    assert_match(/timeout after 200 ms/, data['backends']['crystal']['error'])
    assert_equal true, data['backends']['nodejs']['ok']
  end

  def test_backends_are_called_concurrently
    a = stub(delay: 0.3, &node_answer)
    b = stub(delay: 0.3)
    frontend = app('NODEJS_URL' => a.url, 'CRYSTAL_URL' => b.url)
    _, elapsed = timed { request(frontend, '/json') }
    assert_operator elapsed, :>=, 0.3
    assert_operator elapsed, :<, 0.55, 'both 300 ms calls should overlap'
  end

  def test_tally_counts_versions_and_services_within_window
    calls = 0
    node = stub do |_req|
      calls += 1
      calls.odd? ? { service: 'nodejs', version: '1', message: 'm' } : { service: 'nodejsv2', version: '2', message: 'm' }
    end
    frontend = app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'TALLY_WINDOW' => '4')
    5.times { request(frontend, '/json') } # versions 1,2,1,2,1 -> window keeps 2,1,2,1
    data = json(frontend) # sixth answer: 2 -> 1,2,1,2
    assert_equal({ '1' => 2, '2' => 2 }, data['nodejs_versions'])
    assert_equal({ '1' => 50.0, '2' => 50.0 }, data['nodejs_versions_percent'])
    assert_equal 4, data['samples']
    split = data['split']['nodejs']
    assert_equal 4, split['samples']
    assert_equal 4, split['window']
    assert_equal false, split['configured']
    assert_equal({ 'weight' => nil, 'configured_percent' => nil, 'count' => 2, 'observed_percent' => 50.0 },
                 split['targets']['nodejsv2'])
    page = request(frontend, '/').body # seventh answer: 1 -> 2,1,2,1
    assert_includes page, 'last 4 of 4 requests'
    assert_includes page, '50.0%'
    assert_includes page, 'Sample size: the last 4 answers (window 4).'
    assert_includes page, 'configured weights unknown: no &lt;virtual service&gt;.json files in /nonexistent/weights.'
    assert_includes page, 'nodejs <span class="muted">(configured weights unknown: no nodejs.json)</span>'
  end

  def test_split_shows_configured_weights_next_to_observed
    calls = 0
    node = stub do |_req|
      calls += 1
      { service: calls % 4 == 0 ? 'nodejsv2' : 'nodejs', version: calls % 4 == 0 ? '2' : '1' }
    end
    dir = weights_dir(nodejs: { nodejs: 2, nodejsv2: 1 }, crystal: { crystal: 1 })
    frontend = app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'MESH_WEIGHTS_DIR' => dir)
    3.times { request(frontend, '/json') }
    data = json(frontend) # answers: nodejs, nodejs, nodejs, nodejsv2
    assert_equal({ 'dir' => dir, 'state' => 'ok',
                   'configured' => { 'crystal' => { 'crystal' => 1 }, 'nodejs' => { 'nodejs' => 2, 'nodejsv2' => 1 } },
                   'files' => { 'crystal.json' => { 'state' => 'ok' }, 'nodejs.json' => { 'state' => 'ok' } } },
                 data['weights'])
    split = data['split']['nodejs']
    assert_equal true, split['configured']
    assert_equal 4, split['samples']
    assert_equal({ 'nodejs' => { 'weight' => 2, 'configured_percent' => 66.7, 'count' => 3, 'observed_percent' => 75.0 },
                   'nodejsv2' => { 'weight' => 1, 'configured_percent' => 33.3, 'count' => 1, 'observed_percent' => 25.0 } },
                 split['targets'])
    # crystal never answered: its configured target is listed with no answers yet.
    assert_equal({ 'weight' => 1, 'configured_percent' => 100.0, 'count' => 0, 'observed_percent' => nil },
                 data['split']['crystal']['targets']['crystal'])
    page = request(frontend, '/').body
    assert_includes page, "Configured weights from #{dir}: crystal.json, nodejs.json."
    assert_match(%r{<tr><td>nodejs</td><td class="num">2</td>\n<td class="num">66.7%</td>}, page)
    assert_match(%r{<tr><td>nodejsv2</td><td class="num">1</td>\n<td class="num">33.3%</td>}, page)
    refute_includes page, 'configured weights unknown'
  end

  def test_the_canary_step_and_last_verdict_are_shown_next_to_its_split
    node = stub(&node_answer)
    dir = weights_dir(nodejs: { nodejs: 1, nodejsv2: 1 })
    FileUtils.mkdir_p(File.join(dir, 'canary'))
    File.write(File.join(dir, 'canary', 'nodejs.json'),
               JSON.generate(step: '2 of 3 (1:1)', verdict: 'roll back', reason: 'failed: success rate', checks: []))
    frontend = app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'MESH_WEIGHTS_DIR' => dir)
    assert_equal({ 'nodejs' => { 'step' => '2 of 3 (1:1)', 'verdict' => 'roll back', 'reason' => 'failed: success rate' } },
                 json(frontend)['canary'])
    page = request(frontend, '/').body
    assert_includes page, '<p class="canary">Canary step 2 of 3 (1:1); last verdict: <span class="down">roll back</span> ' \
                          '(failed: success rate)</p>'
    # The weights files are read as before: canary/ is not a weights file.
    assert_equal 'ok', json(frontend)['weights']['state']
  end

  def test_a_canary_status_of_another_shape_is_not_shown_and_is_named
    node = stub(&node_answer)
    dir = weights_dir(nodejs: { nodejs: 1 })
    FileUtils.mkdir_p(File.join(dir, 'canary'))
    File.write(File.join(dir, 'canary', 'nodejs.json'), JSON.generate(step: '1 of 2 (1:1)', verdict: 'maybe'))
    frontend = app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'MESH_WEIGHTS_DIR' => dir)
    assert_equal({}, json(frontend)['canary'])
    refute_includes request(frontend, '/').body, 'class="canary"'
    error = assert_raises(ArgumentError) { Frontend::CanaryStatus.parse('{"step": "1", "verdict": "maybe"}') }
    assert_equal 'verdict must be one of deployed, promote, wait, roll back, got "maybe"', error.message
    assert_raises(ArgumentError) { Frontend::CanaryStatus.parse('{"verdict": "promote"}') }
    assert_raises(ArgumentError) { Frontend::CanaryStatus.parse('[]') }
  end

  def test_observed_service_missing_from_the_weights_is_still_shown
    node = stub(&node_answer('3', service: 'nodejsv3'))
    dir = weights_dir(nodejs: { nodejs: 1 })
    data = json(app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'MESH_WEIGHTS_DIR' => dir))
    assert_equal %w[nodejs nodejsv3], data['split']['nodejs']['targets'].keys
    assert_equal({ 'weight' => nil, 'configured_percent' => nil, 'count' => 1, 'observed_percent' => 100.0 },
                 data['split']['nodejs']['targets']['nodejsv3'])
    assert_equal false, data['split']['crystal']['configured'] # no crystal.json
  end

  def test_weights_directory_changes_are_picked_up
    node = stub(&node_answer)
    dir = weights_dir(nodejs: { nodejs: 1, nodejsv2: 0 })
    nodejs = File.join(dir, 'nodejs.json')
    frontend = app('NODEJS_URL' => node.url, 'CRYSTAL_URL' => dead_url, 'MESH_WEIGHTS_DIR' => dir)
    assert_equal 0.0, json(frontend)['split']['nodejs']['targets']['nodejsv2']['configured_percent']
    File.write(nodejs, JSON.generate(nodejs: 1, nodejsv2: 1))
    assert_equal 50.0, json(frontend)['split']['nodejs']['targets']['nodejsv2']['configured_percent']
    # A second virtual service's file appears (its ConfigMap was created).
    weights_dir(crystal: { crystal: 1 })
    assert_equal 100.0, json(frontend)['split']['crystal']['targets']['crystal']['configured_percent']
    # One file turns invalid: it is named, and the other virtual service keeps its weights.
    File.write(nodejs, '{"nodejs": ')
    data = json(frontend)
    assert_equal 'invalid', data['weights']['state']
    assert_equal({ 'crystal' => { 'crystal' => 1 } }, data['weights']['configured'])
    assert_equal 'invalid', data['weights']['files']['nodejs.json']['state']
    assert_match(/\Anodejs\.json: not JSON/, data['weights']['error'])
    assert_equal [false, true], [data['split']['nodejs']['configured'], data['split']['crystal']['configured']]
    page = request(frontend, '/').body
    assert_includes page, "Configured weights from #{dir}: crystal.json. " \
                          "<span class=\"warn\">invalid weights in #{dir}: nodejs.json: not JSON"
    assert_includes page, 'nodejs <span class="muted">(configured weights unknown: nodejs.json is invalid)</span>'
    refute_includes page, 'crystal <span class="muted">'
    File.delete(File.join(dir, 'crystal.json'))
    page = request(frontend, '/').body
    assert_includes page, "<span class=\"warn\">configured weights unknown: invalid weights in #{dir}: nodejs.json: not JSON"
    File.delete(nodejs)
    assert_equal({ 'dir' => dir, 'state' => 'absent', 'configured' => {}, 'files' => {} }, json(frontend)['weights'])
  end

  def test_refresh_is_clamped_and_offered
    frontend = app('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url)
    page = ->(query) { request(frontend, "/#{query}").body }
    assert_includes page.call('?refresh=5'), '<meta http-equiv="refresh" content="5">'
    assert_includes page.call('?refresh=0'), 'content="1"'
    assert_includes page.call('?refresh=99999'), 'content="300"'
    refute_includes page.call('?refresh=abc'), 'http-equiv="refresh"'
    plain = page.call('')
    refute_includes plain, 'http-equiv="refresh"'
    assert_includes plain, '<a href="?">refresh</a>'
    assert_includes plain, '<a href="?refresh=2">auto-refresh every 2 s</a>'
    assert_includes plain, '<a href="?" class="current">stop</a>'
    assert_includes plain, 'not auto-refreshing'
    auto = page.call('?refresh=2')
    assert_includes auto, '<a href="?refresh=2">refresh</a>'
    assert_includes auto, '<a href="?refresh=2" class="current">auto-refresh every 2 s</a>'
    assert_includes auto, '<a href="?">stop</a>'
    assert_includes auto, 'auto-refreshing every 2 s'
  end

  def test_health_404_and_405
    frontend = app('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url)
    health = request(frontend, '/health')
    assert_equal 200, health.status
    assert_equal({ 'status' => 'ok' }, JSON.parse(health.body))
    missing = request(frontend, '/nope')
    assert_equal 404, missing.status
    assert_equal({ 'error' => 'not found', 'path' => '/nope' }, JSON.parse(missing.body))
    post = Rack::MockRequest.new(frontend).post('/', input: 'x=1')
    assert_equal 405, post.status
    assert_equal 'GET, HEAD', post.headers['Allow']
    assert_equal 405, Rack::MockRequest.new(frontend).post('/health').status
  end

  def test_server_counters_are_on_json_and_the_page
    stats = Frontend::ServerStats.new(capacity: Frontend.capacity(8, 100))
    frontend = Frontend::App.new(config('NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url), stats: stats)
    stats.request_started
    stats.request_finished(200)
    stats.refused!
    data = json(frontend)
    server = data['server']
    assert_equal [1, 0, 1, 0], server.values_at('requests', 'errors', 'refused', 'in_flight')
    assert_equal({ 'threads' => 8, 'backlog' => 100, 'concurrent_requests' => 108, 'workers' => 0 }, server['capacity'])
    page = request(frontend, '/').body
    assert_includes page, 'Requests served 1, in flight 0'
    assert_includes page, 'refused <span class="warn">1</span>'
    assert_includes page, '108 concurrent requests without refusal'
  end

  def test_proxy_comes_from_the_environment_without_dns
    uri = URI('http://nodejs.appmeshworkshop.hosted.local:3000/')
    assert_nil Frontend.proxy_for(uri, {})
    proxy = Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001' })
    assert_equal ['127.0.0.1', 15_001], [proxy.host, proxy.port]
    assert_nil Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001', 'no_proxy' => '.hosted.local' })
    assert_nil Frontend.proxy_for(uri, { 'HTTP_PROXY' => 'http://127.0.0.1:15001', 'NO_PROXY' => '*' })
    refute_nil Frontend.proxy_for(uri, { 'http_proxy' => 'http://127.0.0.1:15001', 'no_proxy' => 'example.com' })
  end

  def test_backend_calls_go_through_http_proxy
    proxy = stub(&node_answer('9', 'via proxy'))
    data = nil
    # crystal (on 127.0.0.1, exempt by no_proxy) is called directly and is refused.
    with_env('http_proxy' => proxy.url, 'no_proxy' => '127.0.0.1') do
      data = json(app('NODEJS_URL' => 'http://nodejs.appmeshworkshop.hosted.local:3000', 'CRYSTAL_URL' => dead_url))
    end
    assert_equal 'via proxy', data['backends']['nodejs']['body']['message']
    assert_match(/refused/i, data['backends']['crystal']['error'])
    assert_equal 1, proxy.requests.size
    assert_equal 'nodejs.appmeshworkshop.hosted.local:3000', proxy.requests.pop['host']
  end

  def with_env(values)
    saved = values.keys.to_h { |key| [key, ENV.fetch(key, nil)] }
    values.each { |key, value| ENV[key] = value }
    yield
  ensure
    saved.each { |key, value| ENV[key] = value }
  end
end
