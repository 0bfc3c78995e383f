# frozen_string_literal: true

require_relative 'test_helper'
require 'fileutils'
require 'minitest/mock'

class WeightsDirTest < Minitest::Test
  # A clock a minute ahead: every file looks settled, so what is cached stays cached.
  LATER = -> { Time.now + 60 }

  def setup
    @tmp = Dir.mktmpdir('weights-test')
    @dir = File.join(@tmp, 'weights')
    Dir.mkdir(@dir)
  end

  def teardown
    FileUtils.remove_entry(@tmp)
  end

  # Writes `name` in the weights directory (or in `dir`); data: JSON text or an object.
  def write(name, data = nil, **object)
    write_in(@dir, name, data || object)
  end

  def write_in(dir, name, data)
    path = File.join(dir, name)
    File.write(path, data.is_a?(String) ? data : JSON.generate(data))
    path
  end

  def test_parse_accepts_the_documented_shape_only
    assert_equal({ 'nodejs' => 2, 'nodejsv2' => 1 }, Frontend::WeightsDir.parse('{"nodejs": 2, "nodejsv2": 1}'))
    assert_equal({ 'nodejs' => 0 }, Frontend::WeightsDir.parse('{"nodejs": 0}'))
    {
      '[1]' => /expected a non-empty \{"target": weight\} object/,
      '{}' => /expected a non-empty/,
      '3' => /expected a non-empty/,
      '{"nodejs": {"nodejs": 1}}' => /nodejs: weight must be a whole number >= 0, got \{"nodejs"=>1\}/,
      '{"nodejs": -1}' => /nodejs: weight must be a whole number >= 0, got -1/,
      '{"nodejs": "1"}' => /weight must be a whole number/,
      '{"nodejs": 1.5}' => /weight must be a whole number/,
      '{"nodejs": true}' => /weight must be a whole number/,
      'nope' => /not JSON/
    }.each do |text, message|
      error = assert_raises(ArgumentError, text) { Frontend::WeightsDir.parse(text) }
      assert_match message, error.message
    end
  end

  def test_absent_without_the_directory_or_without_files
    missing = File.join(@tmp, 'none')
    assert_equal({ dir: missing, state: 'absent', configured: {}, files: {} },
                 Frontend::WeightsDir.new(missing).current.to_h)
    weights = Frontend::WeightsDir.new(@dir)
    assert_equal({ dir: @dir, state: 'absent', configured: {}, files: {} }, weights.current.to_h)
    # Only `<name>.json` counts: not other names, not the kubelet's hidden entries.
    write('README', 'x')
    write('nodejs.json.bak', 'x')
    write('.hidden.json', 'x')
    Dir.mkdir(File.join(@dir, '..2024_01_01_00_00_00.1'))
    assert_equal 'absent', Frontend::WeightsDir.new(@dir).current.state
  end

  def test_one_file_per_virtual_service_composes_the_weights
    write('nodejs.json', nodejs: 2, nodejsv2: 1)
    write('crystal.json', crystal: 1)
    assert_equal({ dir: @dir, state: 'ok',
                   configured: { 'crystal' => { 'crystal' => 1 }, 'nodejs' => { 'nodejs' => 2, 'nodejsv2' => 1 } },
                   files: { 'crystal.json' => { state: 'ok' }, 'nodejs.json' => { state: 'ok' } } },
                 Frontend::WeightsDir.new(@dir).current.to_h)
  end

  def test_an_invalid_file_is_named_and_the_valid_ones_still_count
    write('nodejs.json', nodejs: 2, nodejsv2: 1)
    write('crystal.json', '{"crystal": ')
    write('other.json', other: -1)
    snapshot = Frontend::WeightsDir.new(@dir).current
    assert_equal 'invalid', snapshot.state
    assert_equal({ 'nodejs' => { 'nodejs' => 2, 'nodejsv2' => 1 } }, snapshot.weights)
    assert_equal 'ok', snapshot.files['nodejs.json'][:state]
    assert_equal 'invalid', snapshot.files['crystal.json'][:state]
    assert_match(/\Anot JSON/, snapshot.files['crystal.json'][:error])
    assert_equal 'other: weight must be a whole number >= 0, got -1', snapshot.files['other.json'][:error]
    assert_match(/\Acrystal\.json: not JSON: .*; other\.json: other: weight must be a whole number >= 0, got -1\z/,
                 snapshot.error)
  end

  def test_changes_deletions_and_new_files_are_picked_up
    weights = Frontend::WeightsDir.new(@dir)
    nodejs = write('nodejs.json', nodejs: 1)
    assert_equal({ 'nodejs' => { 'nodejs' => 1 } }, weights.current.weights)
    write('nodejs.json', nodejs: 1, nodejsv2: 1)
    write('crystal.json', crystal: 1)
    assert_equal({ 'crystal' => { 'crystal' => 1 }, 'nodejs' => { 'nodejs' => 1, 'nodejsv2' => 1 } }, weights.current.weights)
    write('crystal.json', '[]')
    assert_equal %w[invalid invalid], [weights.current.state, weights.current.files['crystal.json'][:state]]
    File.delete(File.join(@dir, 'crystal.json'))
    assert_equal({ 'nodejs' => { 'nodejs' => 1, 'nodejsv2' => 1 } }, weights.current.weights)
    assert_equal 'ok', weights.current.state
    File.delete(nodejs)
    assert_equal({ dir: @dir, state: 'absent', configured: {}, files: {} }, weights.current.to_h)
    FileUtils.remove_entry(@dir)
    assert_equal 'absent', weights.current.state
    Dir.mkdir(@dir)
    write('nodejs.json', nodejs: 3)
    assert_equal({ 'nodejs' => { 'nodejs' => 3 } }, weights.current.weights)
  end

  def test_lists_and_reads_again_only_when_something_changed
    write('nodejs.json', nodejs: 1)
    write('crystal.json', crystal: 1)
    weights = Frontend::WeightsDir.new(@dir, clock: LATER)
    first = weights.current
    Frontend::WeightsDir.stub(:parse, ->(_text) { flunk 'parsed an unchanged file again' }) do
      Dir.stub(:children, ->(_dir) { flunk 'listed an unchanged directory again' }) do
        5.times { assert_same first, weights.current }
      end
    end
    # One file changes: only that one is parsed again, and the directory is not listed again.
    write('nodejs.json', nodejs: 1, nodejsv2: 1)
    parsed = []
    parse = Frontend::WeightsDir.method(:parse)
    Frontend::WeightsDir.stub(:parse, ->(text) { parsed << text && parse.call(text) }) do
      Dir.stub(:children, ->(_dir) { flunk 'listed an unchanged directory again' }) do
        assert_equal({ 'nodejs' => 1, 'nodejsv2' => 1 }, weights.current.weights['nodejs'])
      end
    end
    assert_equal ['{"nodejs":1,"nodejsv2":1}'], parsed
  end

  # Timestamps are coarse: a file rewritten with the same size within the same tick keeps its
  # whole stat key. While its mtime is recent, it is read again on every call.
  def test_a_recent_file_is_read_again_even_with_the_same_stat_key
    path = write('nodejs.json', '{"nodejs": 1}')
    now = Time.now
    File.utime(now, now, path)
    weights = Frontend::WeightsDir.new(@dir)
    assert_equal({ 'nodejs' => 1 }, weights.current.weights['nodejs'])
    File.write(path, '{"nodejs": 2}')
    File.utime(now, now, path)
    assert_equal({ 'nodejs' => 2 }, weights.current.weights['nodejs'])
  end

  # A projected volume: each file is a symlink through `..data`, which the kubelet swaps to a
  # new directory. The new files have other inodes (and often the same size and mtime); a new
  # ConfigMap adds a file, and a deleted one takes its file away.
  def test_projected_volume_symlink_swap_is_noticed
    v1 = File.join(@dir, '..2024_01_01_00_00_00.1')
    v2 = File.join(@dir, '..2024_01_01_00_00_01.2')
    [v1, v2].each { |dir| Dir.mkdir(dir) }
    write_in(v1, 'nodejs.json', { nodejs: 2, nodejsv2: 1 })
    write_in(v2, 'nodejs.json', { nodejs: 1, nodejsv2: 2 })
    write_in(v2, 'crystal.json', { crystal: 1 })
    mtime = Time.at(1_700_000_000)
    Dir[File.join(@dir, '..2024*', '*.json')].each { |file| File.utime(mtime, mtime, file) }
    File.symlink(File.basename(v1), File.join(@dir, '..data'))
    File.symlink('..data/nodejs.json', File.join(@dir, 'nodejs.json'))
    weights = Frontend::WeightsDir.new(@dir, clock: LATER)
    assert_equal({ 'nodejs' => { 'nodejs' => 2, 'nodejsv2' => 1 } }, weights.current.weights)
    # The kubelet's order: the new data, the `..data` swap, then the new visible symlinks.
    File.symlink(File.basename(v2), File.join(@dir, '..data_tmp'))
    File.rename(File.join(@dir, '..data_tmp'), File.join(@dir, '..data'))
    assert_equal({ 'nodejs' => { 'nodejs' => 1, 'nodejsv2' => 2 } }, weights.current.weights)
    File.symlink('..data/crystal.json', File.join(@dir, 'crystal.json'))
    assert_equal({ 'crystal' => { 'crystal' => 1 }, 'nodejs' => { 'nodejs' => 1, 'nodejsv2' => 2 } },
                 weights.current.weights)
    File.delete(File.join(@dir, 'crystal.json'))
    assert_equal %w[nodejs], weights.current.weights.keys
  end

  def test_limits_and_things_that_are_not_weights_files
    write('big.json', " #{'x' * Frontend::WeightsDir::MAX_BYTES}")
    Dir.mkdir(File.join(@dir, 'dir.json'))
    File.symlink('nowhere.json', File.join(@dir, 'dangling.json'))
    snapshot = Frontend::WeightsDir.new(@dir).current
    assert_equal 'invalid', snapshot.state
    assert_equal({ 'big.json' => { state: 'invalid', error: "larger than #{Frontend::WeightsDir::MAX_BYTES} bytes" },
                   'dir.json' => { state: 'invalid', error: 'not a regular file' } },
                 snapshot.files) # the dangling symlink is a file that is not there
    FileUtils.rm_rf(Dir[File.join(@dir, '*')])
    (Frontend::WeightsDir::MAX_FILES + 1).times { |i| write("vs#{i}.json", { "vs#{i}" => 1 }) }
    snapshot = Frontend::WeightsDir.new(@dir).current
    assert_equal 'invalid', snapshot.state
    assert_equal({}, snapshot.weights)
    assert_equal "#{Frontend::WeightsDir::MAX_FILES + 1} *.json files, more than #{Frontend::WeightsDir::MAX_FILES}",
                 snapshot.error
  end

  def test_a_file_where_the_directory_should_be_is_invalid
    path = write('weights.json', nodejs: { nodejs: 1 })
    snapshot = Frontend::WeightsDir.new(path).current
    assert_equal({ dir: path, state: 'invalid', configured: {}, files: {}, error: "#{path} is not a directory" }, snapshot.to_h)
  end

  # Readers on many threads while files are replaced atomically (write, then rename, as the
  # kubelet does): every snapshot is whole, one of the versions written.
  def test_thread_safe_under_concurrent_replacement
    write('nodejs.json', nodejs: 0, nodejsv2: 1)
    weights = Frontend::WeightsDir.new(@dir)
    versions = (0..20).map { |n| { 'nodejs' => n, 'nodejsv2' => 1 } }
    seen = Queue.new
    readers = Array.new(8) do
      Thread.new do
        200.times do
          snapshot = weights.current
          seen << [snapshot.state, snapshot.weights['nodejs']]
        end
      end
    end
    versions.each do |version|
      tmp = write('.tmp-nodejs', version)
      File.rename(tmp, File.join(@dir, 'nodejs.json'))
    end
    readers.each(&:join)
    results = Array.new(seen.size) { seen.pop }
    assert_equal 1600, results.size
    assert_equal(['ok'], results.map(&:first).uniq)
    assert_empty(results.map(&:last).uniq - versions)
    assert_equal versions.last, weights.current.weights['nodejs']
  end
end
