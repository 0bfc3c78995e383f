# frozen_string_literal: true

require 'json'

module Frontend
  # The configured canary weights, from a directory (MESH_WEIGHTS_DIR) that holds one file per
  # virtual service: `<virtual service>.json` containing {"<target service>": weight, ...}, e.g.
  # nodejs.json = {"nodejs": 2, "nodejsv2": 1}. #current composes them into
  # {virtual service => {target service => weight}}.
  #
  # In the cluster the directory is a projected volume of one optional ConfigMap per backend
  # (`weights-<virtual service>`, from that virtual service's routing manifest). A file is missing
  # until its ConfigMap exists, and the kubelet replaces files by swapping the `..data` symlink.
  # Hidden entries (`..data`, `..<timestamp>`) are the kubelet's, and are skipped.
  #
  # The cost of #current is one `stat` of the directory and one of each file. The directory is
  # listed again only when its stat key changes (an entry added, removed or renamed, which
  # includes the `..data` swap). A file is read and parsed again only when its own stat key
  # (mtime, size, inode, device) changes. File system timestamps are coarse, so a second change
  # within the same tick could go unseen. A key younger than RACY_S is therefore not trusted,
  # and the entry is checked again on the next call (git does the same with "racily clean"
  # index entries). Thread-safe.
  class WeightsDir
    # state: 'ok' (every file valid), 'absent' (no directory, or no `*.json` file in it) or
    # 'invalid' (error names each bad file and says why). weights holds the valid files' weights,
    # even next to an invalid one. files: {file name => {state:, error:}}.
    Snapshot = Struct.new(:dir, :state, :weights, :files, :error, keyword_init: true) do
      def to_h
        { dir: dir, state: state, configured: weights, files: files, error: error }.compact
      end
    end

    # One file's outcome, and the stat key it holds for (nil: check it again next time).
    Entry = Struct.new(:key, :state, :targets, :error)

    MAX_BYTES = 64 * 1024 # per file
    MAX_FILES = 100
    RACY_S = 2.0
    FILE_PATTERN = /\A[^.].*\.json\z/

    attr_reader :dir

    # clock: the current time, compared with mtimes (tests move it forward).
    # parser: text -> the file's value, raising ArgumentError for another shape (nil: weights,
    # WeightsDir.parse; the canary's status files use CanaryStatus.parse).
    def initialize(dir, clock: -> { Time.now }, parser: nil)
      @dir = dir
      @clock = clock
      @parser = parser
      @lock = Mutex.new
      @dir_key = nil
      @names = []
      @entries = {}
      @snapshot = nil
    end

    def current
      @lock.synchronize do
        @changed = false
        names, problem = list
        problem ||= "#{names.size} *.json files, more than #{MAX_FILES}" if names.size > MAX_FILES
        if problem
          forget
          next failed(problem)
        end

        entries = names.each_with_object({}) do |name, out|
          entry = check(name)
          out[name] = entry if entry
        end
        @changed ||= entries.size != @entries.size
        @entries = entries
        @snapshot = compose(entries) if @changed || @snapshot.nil?
        @snapshot
      end
    end

    # One file's weights, {target => weight}, from its text; raises ArgumentError when it has
    # another shape.
    def self.parse(text)
      data = JSON.parse(text)
      raise ArgumentError, 'expected a non-empty {"target": weight} object' unless data.is_a?(Hash) && !data.empty?

      data.to_h do |target, weight|
        unless weight.is_a?(Integer) && weight >= 0
          raise ArgumentError, "#{target}: weight must be a whole number >= 0, got #{weight.inspect}"
        end

        [target.freeze, weight]
      end.freeze
    rescue JSON::ParserError => e
      raise ArgumentError, "not JSON: #{e.message.lines.first.to_s.strip[0, 120]}"
    end

    private

    # => [the `*.json` names in the directory, nil] or [[], why it cannot be read]. The
    # directory is listed again only when its stat key changed; no directory is no names.
    def list
      stat = File.stat(@dir)
      return [[], "#{@dir} is not a directory"] unless stat.directory?

      key = [stat.mtime, stat.size, stat.ino, stat.dev]
      return [@names, nil] if key == @dir_key

      @changed = true
      @names = Dir.children(@dir).grep(FILE_PATTERN).sort
      @dir_key = settled?(stat) ? key : nil
      [@names, nil]
    rescue Errno::ENOENT
      forget
      [[], nil]
    rescue SystemCallError => e
      [[], "cannot list #{@dir}: #{e.message}"]
    end

    # The file's entry: the cached one while its stat key holds, else read again. nil when it
    # is not there (removed since the listing, which changed the directory's key, or a
    # dangling symlink).
    def check(name)
      path = File.join(@dir, name)
      stat = File.stat(path)
      key = [stat.mtime, stat.size, stat.ino, stat.dev]
      cached = @entries[name]
      return cached if cached&.key && cached.key == key

      @changed = true
      entry, cacheable = read(path, stat)
      entry.key = cacheable && settled?(stat) ? key : nil
      entry
    rescue Errno::ENOENT, Errno::ENOTDIR
      @changed = true if @entries.key?(name)
      nil
    rescue SystemCallError => e
      @changed = true
      Entry.new(nil, 'invalid', nil, "cannot read: #{e.message}")
    end

    # => [entry, cacheable]; a read that failed (the file swapped away in between) is not cached.
    def read(path, stat)
      return [invalid('not a regular file'), true] unless stat.file?
      return [invalid("larger than #{MAX_BYTES} bytes"), true] if stat.size > MAX_BYTES

      text = File.read(path, MAX_BYTES + 1).to_s
      return [invalid("larger than #{MAX_BYTES} bytes"), false] if text.bytesize > MAX_BYTES

      [Entry.new(nil, 'ok', @parser ? @parser.call(text) : WeightsDir.parse(text), nil), true]
    rescue ArgumentError => e
      [invalid(e.message), true]
    rescue SystemCallError => e
      [invalid("cannot read: #{e.message}"), false]
    end

    def invalid(message)
      Entry.new(nil, 'invalid', nil, message)
    end

    def settled?(stat)
      @clock.call - stat.mtime >= RACY_S
    end

    def compose(entries)
      files = entries.to_h { |name, entry| [name, { state: entry.state, error: entry.error }.compact.freeze] }.freeze
      weights = entries.select { |_, entry| entry.state == 'ok' }
                       .to_h { |name, entry| [name.delete_suffix('.json').freeze, entry.targets] }.freeze
      return Snapshot.new(dir: @dir, state: 'absent', weights: weights, files: files) if entries.empty?

      bad = entries.reject { |_, entry| entry.state == 'ok' }
      return Snapshot.new(dir: @dir, state: 'ok', weights: weights, files: files) if bad.empty?

      Snapshot.new(dir: @dir, state: 'invalid', weights: weights, files: files,
                   error: bad.map { |name, entry| "#{name}: #{entry.error}" }.join('; '))
    end

    def failed(message)
      Snapshot.new(dir: @dir, state: 'invalid', weights: {}.freeze, files: {}.freeze, error: message)
    end

    # The directory is gone or unreadable: nothing cached holds any more.
    def forget
      @changed = true if @dir_key || !@names.empty? || !@entries.empty?
      @dir_key = nil
      @names = []
      @entries = {}
    end
  end

  # The canary's live step and the verdict that put it there, one file per virtual service in the
  # weights directory's `canary/` folder: `<virtual service>.json` = {"step": "2 of 3 (1:1)",
  # "verdict": "promote", "reason": "every check passed"}. In the cluster it comes from the routing
  # manifest's ConfigMap (the pipeline deploys one per step, and one per roll back); locally
  # `python -m canary --record` writes it.
  module CanaryStatus
    VERDICTS = ['deployed', 'promote', 'wait', 'roll back'].freeze

    module_function

    def parse(text)
      data = JSON.parse(text)
      raise ArgumentError, 'expected an object with "step" and "verdict"' unless data.is_a?(Hash)

      step, verdict, reason = data.values_at('step', 'verdict', 'reason')
      raise ArgumentError, "step must be text, got #{step.inspect}" unless step.is_a?(String) && !step.empty?
      raise ArgumentError, "verdict must be one of #{VERDICTS.join(', ')}, got #{verdict.inspect}" unless VERDICTS.include?(verdict)

      { step: step.freeze, verdict: verdict.freeze, reason: reason.is_a?(String) ? reason.freeze : nil }.freeze
    rescue JSON::ParserError => e
      raise ArgumentError, "not JSON: #{e.message.lines.first.to_s.strip[0, 120]}"
    end

    # The statuses under `dir`/canary, read the way the weights are (stat-cached).
    def directory(weights_dir, clock: -> { Time.now })
      WeightsDir.new(File.join(weights_dir, 'canary'), clock: clock, parser: method(:parse))
    end
  end
end
